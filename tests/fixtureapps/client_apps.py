"""One WSGI app with a route per thing the client tests ask of a server."""

import hashlib
import json


def app(environ, start_response):
    # uWSGI does not derive PATH_INFO from what nginx sends; scgikit does.
    path = environ.get("PATH_INFO") or environ["DOCUMENT_URI"]
    query = environ.get("QUERY_STRING", "")
    if path == "/env" or path.startswith("/env/"):
        shown = {k: v for k, v in environ.items() if isinstance(v, str)}
        return _answer(start_response, "200 OK", json.dumps(shown).encode(), "application/json")
    if path == "/hash":
        digest, size = hashlib.sha256(), 0
        while piece := environ["wsgi.input"].read(1 << 16):
            digest.update(piece)
            size += len(piece)
        body = json.dumps({"size": size, "sha256": digest.hexdigest(),
                           "method": environ["REQUEST_METHOD"],
                           "content_type": environ.get("CONTENT_TYPE", "")})
        return _answer(start_response, "200 OK", body.encode(), "application/json")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        return _answer(start_response, "200 OK", body, "application/octet-stream")
    if path == "/stream":
        megabytes = int(query or "1")
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(megabytes << 20))])
        block = b"z" * 65536
        return (block for _ in range(megabytes * 16))
    if path == "/cookies":
        start_response("302 Found", [("Location", "/env"), ("Set-Cookie", "a=1; Path=/"),
                                     ("Set-Cookie", "b=2; Path=/"), ("Content-Length", "0")])
        return [b""]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        return _answer(start_response, f"{code} Whatever", b"status body\n", "text/plain")
    return _answer(start_response, "404 Not Found", b"not found\n", "text/plain")


def _answer(start_response, status, body, content_type):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
