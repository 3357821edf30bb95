"""The mutual-TLS HTTP/2 reverse tunnel: carriers, security, session, listener, connector."""
