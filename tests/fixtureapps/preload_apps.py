"""Apps that say which process imported them, for --preload (tests/test_preload.py).

Each answers ``IMPORTED SERVING``: the pid of the process that imported this module, then
the pid of the one that made the app ready to serve: the worker answering (WSGI), the one
that ran the lifespan startup (ASGI), the one that made the handler (a classic handler
factory).  With IMPORT_LOG set, the import appends a line to that file (a path relative
to the current folder, which --chdir sets): its pid, and the NOTIFY_SOCKET it sees (- for
none), so the file says how often, and where, the module was imported, and with what.
"""

import os

from scgikit.scgi_server import SCGIHandler, handler_factory

IMPORTED_IN = os.getpid()
IMPORTED_AS = os.getuid()
if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as imports:
        imports.write(f"{IMPORTED_IN} {os.environ.get('NOTIFY_SOCKET', '-')}\n")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{IMPORTED_IN} {os.getpid()}".encode()]


def uids(environ, start_response):
    """The user id that imported this module, and the one that serves."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{IMPORTED_AS} {os.getuid()}".encode()]


_started_in = None


async def asgi_app(scope, receive, send):
    """The twin of ``app``: its second pid is the one its lifespan startup ran in."""
    global _started_in
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _started_in = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"{IMPORTED_IN} {_started_in}".encode()})


class PidHandler(SCGIHandler):
    """A classic handler answering the pid that imported the module and the one that made it."""

    def __init__(self, parent_fd):
        super().__init__(parent_fd)
        self.made_in = os.getpid()

    def produce(self, env, bodysize, input, output):
        output.write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        output.write(f"{IMPORTED_IN} {self.made_in}")


@handler_factory
def make_handler(parent_fd):
    return PidHandler(parent_fd)
