"""The security layer: mutual TLS on a socket or over a memory BIO (inside a carrier), the
TLS contexts, certificate reading, the CRL, and telling an intercepting proxy from a mistake."""
