"""Apps for the request-timeout and concurrency-cap tests: requests the test holds.

``/hold?GATE`` waits in the app until the file GATE exists (at most a minute), then
answers ``held``; ``/stream?GATE`` sends its head and a first chunk at once, then waits
for GATE the same way before its last chunk.  Each says in the log when it starts.
Anything else answers the worker's pid.  ``asgi_app`` is the ASGI twin: it waits with
``asyncio.sleep``, as an app waiting on a database would, so it can be cancelled.
"""

import asyncio
import logging
import os
import time

log = logging.getLogger("scgikit")
_MOST = 60.0


def _gate_open(gate):
    return os.path.exists(gate)


def _wait(gate):
    deadline = time.monotonic() + _MOST
    while not _gate_open(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


async def _await(gate):
    deadline = time.monotonic() + _MOST
    while not _gate_open(gate) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def app(environ, start_response):
    path, gate = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/hold":
        log.warning("held request started: %s", gate)
        _wait(gate)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"held"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream(gate)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def _stream(gate):
    log.warning("held stream started: %s", gate)
    yield b"first;"
    _wait(gate)
    yield b"last"


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, gate = scope["path"], scope["query_string"].decode()
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}
    if path == "/hold":
        log.warning("held request started: %s", gate)
        await _await(gate)
        await send(start)
        await send({"type": "http.response.body", "body": b"held"})
    elif path == "/stream":
        await send(start)
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        log.warning("held stream started: %s", gate)
        await _await(gate)
        await send({"type": "http.response.body", "body": b"last"})
    else:
        await send(start)
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
