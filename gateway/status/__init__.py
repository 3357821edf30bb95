"""The status and usage page on the admin listener (``/``) and ``gateway status``: ledger
queries, a pure snapshot, server-rendered HTML and SVG, the admin guard, the routes."""
