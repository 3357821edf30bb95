"""The HTTP/2 layer both roles share: a sans-IO connection, the session's I/O loops, the
streams, and the hello exchange that admits a tunnel."""
