"""A WSGI hello world: scgikit serve examples/hello.py:app"""


def app(environ, start_response):
    body = b"Hello from scgikit!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
