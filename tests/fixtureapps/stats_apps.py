"""Apps for the metrics tests: answers of a chosen status and size, and a request the test holds.

``/STATUS?SIZE`` answers STATUS with a body of SIZE bytes, after reading the request body.
``/hold?FIFO`` opens the named pipe FIFO and waits until the test writes to it (or forever,
if it never does): the request stays in the app exactly as long as the test wants.
"""

import asyncio


def _plan(path, query):
    status = int(path.strip("/") or 200)
    return status, b"x" * int(query or 0)


def _hold(fifo):
    with open(fifo, "rb") as pipe:
        return pipe.read()


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/hold":
        body = _hold(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    status, answer = _plan(environ["PATH_INFO"], environ["QUERY_STRING"])
    start_response(f"{status} Chosen", [("Content-Type", "text/plain")])
    return [answer]


async def asgi_app(scope, receive, send):
    """The ASGI twin of ``app``: the same answers, but for the reason phrase (ASGI sends a
    status code; the server gives the standard phrase, not "Chosen")."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    query = scope["query_string"].decode()
    if scope["path"] == "/hold":
        answer = await asyncio.get_running_loop().run_in_executor(None, _hold, query)
        status = 200
    else:
        status, answer = _plan(scope["path"], query)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"Content-Type", b"text/plain")]})
    await send({"type": "http.response.body", "body": answer})
