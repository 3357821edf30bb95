"""Who is calling: API keys (the key store), JWTs from configured issuers, the identity."""
