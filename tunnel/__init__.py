"""The mutual-TLS HTTP/2 reverse tunnel, in layers: carrier/, security/, h2/; the roles on top
(listener and pool on the gateway side, connector, dialers/ and doctor on the office side)."""
