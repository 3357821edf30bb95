"""The carrier layer: bytes between connector and gateway, over TCP (directly or through an HTTP
proxy's ``CONNECT``) or inside a WebSocket. It proves nothing; the security layer above does."""
