"""Apps for the recycling and health tests: a worker that grows, a request the test holds,
an app that loads when the test says.

``/grow?MIB`` keeps MIB mebibytes more in the worker (written, so resident; up to 64 MiB
in all) and answers how many it holds.  ``/hold?FIFO`` waits in the app until the test
writes to the named pipe FIFO (stats_apps.py).  Anything else answers ``ok``.
``gated(GATE)`` loads the app once the file GATE exists: a worker that boots as slowly as
the test wants.
"""

import os
import time

import stats_apps

KEPT = []  # what /grow keeps, for the worker's life
MOST = 64  # MiB: /grow keeps no more than this


def _answer(path, query):
    if path == "/grow":
        if len(KEPT) * int(query) < MOST:
            KEPT.append(b"\x01" * (int(query) << 20))
        return f"holding {sum(map(len, KEPT)) >> 20} MiB".encode()
    if path == "/hold":
        return stats_apps._hold(query)
    return b"ok"


def app(environ, start_response):
    body = _answer(environ["PATH_INFO"], environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


async def asgi_app(scope, receive, send):
    """The ASGI twin of ``app`` (/hold waits in a thread, so the loop serves meanwhile)."""
    import asyncio

    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/hold":
        body = await asyncio.get_running_loop().run_in_executor(None, _answer, path, query)
    else:
        body = _answer(path, query)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Content-Type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def gated(gate, app=app):
    """Loads ``app`` once the file ``gate`` exists (for at most a minute)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return app


def asgi_gated(gate):
    """The ASGI twin of ``gated``."""
    return gated(gate, asgi_app)
