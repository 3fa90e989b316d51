"""The app of the session-affinity tests (test_session_affinity.py), WSGI and its ASGI twin.

``/pid`` answers the worker's pid; ``/slow?SECONDS&N`` logs ``start N PID`` on stderr,
waits SECONDS (the ASGI twin awaits, so its loop serves other requests meanwhile: a
session's requests must still not overlap), logs ``end N PID`` and answers the pid.
"""

import asyncio
import os
import sys
import time


def _log(what: str, query: str) -> None:
    number = query.split("&")[1] if "&" in query else "-"
    print(f"{what} {number} {os.getpid()}", file=sys.stderr, flush=True)


def app(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if environ.get("PATH_INFO") == "/slow":
        _log("start", query)
        time.sleep(float(query.split("&")[0] or "1"))
        _log("end", query)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode()
    if scope["path"] == "/slow":
        _log("start", query)
        await asyncio.sleep(float(query.split("&")[0] or "1"))
        _log("end", query)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
