"""The connector's ways to open a tunnel (carrier, then mutual TLS), one per ``transport``,
listed in one plain table (:mod:`tunnel.dialers.table`)."""
