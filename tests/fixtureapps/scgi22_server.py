"""A server on the original `scgi` package (PyPI scgi 2.2): `python scgi22_server.py PORT`."""

import hashlib
import json
import sys

from scgi.scgi_server import SCGIHandler, SCGIServer


class Handler(SCGIHandler):
    def produce(self, env, bodysize, input, output):
        if env.get("DOCUMENT_URI") == "/stream":
            megabytes = int(env.get("QUERY_STRING") or "1")
            output.write(b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n")
            output.write(b"Content-Length: %d\r\n\r\n" % (megabytes << 20))
            block = b"z" * 65536
            for _ in range(megabytes * 16):
                output.write(block)
            return
        digest, size, left = hashlib.sha256(), 0, bodysize
        while left:
            piece = input.read(min(left, 65536))
            if not piece:
                break
            digest.update(piece)
            size += len(piece)
            left -= len(piece)
        body = json.dumps({"env": env, "size": size, "sha256": digest.hexdigest()}).encode()
        output.write(b"Status: 200 OK\r\nContent-Type: application/json\r\n")
        output.write(b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n" + body)


if __name__ == "__main__":
    SCGIServer(handler_class=Handler, host="127.0.0.1", port=int(sys.argv[1]),
               max_children=2).serve()
