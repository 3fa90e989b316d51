"""The apps every server in the benchmark runs: the same work, in each server's own API.

Routes (by PATH_INFO, or DOCUMENT_URI for servers that derive no PATH_INFO):
/hello (13 bytes), /echo (the body back), /1mb (1 MiB), /50mb (50 MiB in 64 KiB pieces),
/sleep (hello after waiting 10 ms: time.sleep in WSGI, asyncio.sleep in ASGI; the I/O-bound
workload, a request that waits on a database or another service).

A hello costs a server nothing of this module's but its code: the 1 MiB answer is made on
its first request, and asyncio is imported by the ASGI app that awaits it (bench/footprint.py
measures each server's memory with this module loaded).
"""

import time

HELLO = b"Hello, world!"
BLOCK = b"x" * 65536
_MEGABYTE: list[bytes] = []  # made once, on the first /1mb
HEADERS_TEXT = [("Content-Type", "text/plain")]
WAIT = 0.010  # /sleep's wait, in seconds


def megabyte():
    """The 1 MiB answer, made on its first use."""
    if not _MEGABYTE:
        _MEGABYTE.append(b"y" * (1 << 20))
    return _MEGABYTE[0]


def _route(environ):
    return environ.get("PATH_INFO") or environ.get("DOCUMENT_URI") or "/hello"


def app(environ, start_response):
    """WSGI: scgikit, uWSGI, flup."""
    path = _route(environ)
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/1mb":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(1 << 20))])
        return [megabyte()]
    if path == "/50mb":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(50 << 20))])
        return (BLOCK for _ in range(800))
    if path == "/sleep":
        time.sleep(WAIT)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


async def asgi_app(scope, receive, send):
    """ASGI: aioscgi."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if path == "/sleep":
        import asyncio  # (loaded already: the server runs this app on its loop)

        await asyncio.sleep(WAIT)
    if path == "/echo":
        chunks, kind = [body], b"application/octet-stream"
    elif path == "/1mb":
        chunks, kind = [megabyte()], b"application/octet-stream"
    elif path == "/50mb":
        chunks, kind = [BLOCK] * 800, b"application/octet-stream"
    else:
        chunks, kind = [HELLO], b"text/plain"
    size = sum(len(c) for c in chunks)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", kind), (b"content-length", str(size).encode())]})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk,
                    "more_body": i < len(chunks) - 1})


def produce(env, bodysize, input, output):
    """The classic handler's produce(), shared by scgikit.scgi_server and scgi 2.2."""
    path = env.get("DOCUMENT_URI") or env.get("REQUEST_URI", "/hello").partition("?")[0]
    if path == "/echo":
        body = input.read(bodysize)
        output.write(b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
    elif path == "/1mb":
        output.write(b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 1048576\r\n\r\n" + megabyte())
    elif path == "/50mb":
        output.write(b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 52428800\r\n\r\n")
        for _ in range(800):
            output.write(BLOCK)
    else:
        output.write(b"Status: 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 13\r\n\r\n" + HELLO)
