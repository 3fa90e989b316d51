"""Routes that answer a POST without reading its body (or only its start), for
tests/test_unread_body.py: as a WSGI app and as a classic handler, the same answers (and
as an ASGI app: asgi_apps.unread).

/ok            200 and a 128 KiB body, body unread
/redirect      302 with a Location, body unread
/unauthorized  401 with WWW-Authenticate, body unread
/partial       200 after reading only the first 1 KiB of the body
/read          200 after reading the whole body: its size and sha256 (the control)
anything else  404, body unread
"""

import hashlib

import scgikit.scgi_server

OK_BODY = bytes(range(256)) * 512  # 128 KiB: large enough that a reset would cut it
LOCATION = "http://localhost/login?next=/upload"
PARTIAL = 1024


def answer(path, body):
    """(status line, headers, body) for ``path``; ``body`` is read only where the route says."""
    if path == "/ok":
        return "200 OK", [("Content-Type", "application/octet-stream")], OK_BODY
    if path == "/redirect":
        return ("302 Found", [("Location", LOCATION), ("Content-Type", "text/plain")],
                b"see /login\n")
    if path == "/unauthorized":
        return ("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="upload"'),
                                     ("Content-Type", "text/plain")], b"log in first\n")
    if path == "/partial":
        start = body.read(PARTIAL)
        text = f"read {len(start)} sha256 {hashlib.sha256(start).hexdigest()}\n"
        return "200 OK", [("Content-Type", "text/plain")], text.encode()
    if path == "/read":
        digest, size = hashlib.sha256(), 0
        while piece := body.read(1 << 16):
            digest.update(piece)
            size += len(piece)
        text = f"read {size} sha256 {digest.hexdigest()}\n"
        return "200 OK", [("Content-Type", "text/plain")], text.encode()
    return "404 Not Found", [("Content-Type", "text/plain")], b"no such upload endpoint\n"


def app(environ, start_response):
    status, headers, body = answer(environ["PATH_INFO"], environ["wsgi.input"])
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


class Unread(scgikit.scgi_server.SCGIHandler):
    """The same routes as a classic handler: produce() never reads ``input`` unless told."""

    def produce(self, env, bodysize, input, output):
        path = (env.get("DOCUMENT_URI") or env["REQUEST_URI"]).partition("?")[0]
        status, headers, body = answer(path, input)
        output.write(f"Status: {status}\r\n")
        for name, value in headers + [("Content-Length", str(len(body)))]:
            output.write(f"{name}: {value}\r\n")
        output.write("\r\n")
        output.write(body)
