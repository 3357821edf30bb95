"""The API routes: one ASGI adapter, the route handlers, request checks, forwarding, answers."""
