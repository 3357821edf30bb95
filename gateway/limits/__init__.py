"""Per-identity limits (requests, tokens, concurrency) and per-address connection limits."""
