"""App adapters: how a parsed SCGI request reaches a WSGI app or a classic handler."""
