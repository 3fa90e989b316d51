"""ASGI apps for the server tests.

The twins come first: each answers as the WSGI fixture app of the same name does (in
wsgi_apps.py unless it says otherwise), with the same status, headers and body bytes, and
reads the request body as that app does, so that a server-behaviour test serves it on the
asyncio model (tests/servers.py: ASGI_TWINS).  Where ASGI cannot do what the WSGI app
does, the twin says so.  The apps after them prove one part of the ASGI handling each.
"""

import asyncio
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time


async def _read_body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send, body, status=200, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _start(send, status, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(name.encode(), value.encode()) for name, value in headers]})


async def _plain(send, body, content_type="text/plain"):
    """The answer of most WSGI fixture apps: 200, Content-Type as they spell it, one body."""
    await _start(send, 200, [("Content-Type", content_type)])
    await send({"type": "http.response.body", "body": body})


def _as_text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_text(item) for key, item in value.items()}
    return value


# --- the twins of the WSGI fixture apps --------------------------------------------------

async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await _plain(send, b"hello")


async def pid(scope, receive, send):
    if scope["type"] != "http":
        return
    await _plain(send, str(os.getpid()).encode())


async def slow(scope, receive, send):
    """A blocking sleep of N seconds, as the WSGI app's: it stops the whole loop."""
    if scope["type"] != "http":
        return
    print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
    time.sleep(float(scope["query_string"] or b"1"))
    await _plain(send, b"slow done")


async def slow_awaiting(scope, receive, send):
    """``slow`` as an ASGI app waits: its N seconds are awaited (asyncio.sleep), and the
    loop serves other requests meanwhile.  Not a twin: for a test that needs requests
    which take their time on asyncio, where a blocking one stops the loop."""
    if scope["type"] != "http":
        return
    print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
    await asyncio.sleep(float(scope["query_string"] or b"1"))
    await _plain(send, b"slow done")


async def env_var(scope, receive, send):
    if scope["type"] != "http":
        return
    await _plain(send, os.environ.get("GREETING", "unset").encode() + b" " + os.getcwd().encode())


async def heap(scope, receive, send):
    """Whether a 900 KiB block comes from an mmap of its own in this worker (heap_probe)."""
    import heap_probe

    if scope["type"] != "http":
        return
    await _plain(send, json.dumps({"mapped": heap_probe.mapped()}).encode(),
                 "application/json")


async def echo_hash(scope, receive, send):
    """Reads the body message by message and answers its length and sha256.  ``extra``
    is what came past CONTENT_LENGTH (the WSGI app reads on at the end, where it must get
    b""; an ASGI app cannot read past its last message, so the twin counts what the
    messages carried beyond the length announced)."""
    if scope["type"] != "http":
        return
    announced = int(dict(scope["headers"]).get(b"content-length", b"0"))
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        digest.update(message["body"])
        size += len(message["body"])
        if not message["more_body"]:
            break
    body = json.dumps({"size": size, "sha256": digest.hexdigest(),
                       "extra": max(0, size - announced)})
    await _plain(send, body.encode(), "application/json")


async def stream(scope, receive, send):
    """A generated response of QUERY_STRING megabytes, 64 KiB at a time."""
    if scope["type"] != "http":
        return
    megabytes = int(scope["query_string"] or b"1")
    await _start(send, 200, [("Content-Type", "application/octet-stream")])
    block = b"x" * 65536
    for _ in range(megabytes * 16):
        await send({"type": "http.response.body", "body": block, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def big_file(scope, receive, send):
    """64 MiB from a real file with http.response.pathsend (sendfile), as the WSGI app
    sends its file through wsgi.file_wrapper."""
    if scope["type"] != "http":
        return
    with tempfile.NamedTemporaryFile() as handle:
        handle.truncate(64 << 20)
        await _start(send, 200, [("Content-Type", "application/octet-stream")])
        await send({"type": "http.response.pathsend", "path": handle.name})


async def empty(scope, receive, send):
    if scope["type"] != "http":
        return
    await _start(send, 204)
    await send({"type": "http.response.body", "body": b""})


async def error(scope, receive, send):
    if scope["type"] != "http":
        return
    raise RuntimeError("secret detail that must not reach the client")


async def error_after_head(scope, receive, send):
    if scope["type"] != "http":
        return
    await _start(send, 200, [("Content-Type", "text/plain")])
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("failed mid-body")


async def bad_header(scope, receive, send):
    if scope["type"] != "http":
        return
    await _start(send, 200, [("X-Bad", "line\r\nInjected: yes")])
    await send({"type": "http.response.body", "body": b"never sent"})


async def sometimes_bad(scope, receive, send):
    """Good headers on most paths, an injected header on /bad: the head cache must not hide it."""
    if scope["type"] != "http":
        return
    value = "a\r\nInjected: yes" if scope["path"] == "/bad" else "a"
    await _start(send, 200, [("X-Value", value)])
    await send({"type": "http.response.body", "body": b"body"})


async def exc_info_replaces(scope, receive, send):
    """The WSGI app's answer, 503 and "replaced": it replaces its 200 with start_response's
    exc_info; an ASGI app has no such call and sends the 503 it ends with."""
    if scope["type"] != "http":
        return
    await _start(send, 503, [("Content-Type", "text/plain")])
    await send({"type": "http.response.body", "body": b"replaced"})


async def closing(scope, receive, send):
    """The WSGI app's iterable as messages: "one", then "two" (or, with fail=1, a failure),
    then the end; and then what its close() does, the mark written, the app still at work
    after its last chunk."""
    if scope["type"] != "http":
        return
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&"))
    await _start(send, 200, [("Content-Type", "text/plain")])
    await send({"type": "http.response.body", "body": b"one", "more_body": True})
    try:
        if query.get("fail") == "1":
            raise RuntimeError("iteration failed")
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        with open(query["mark"], "w") as fh:
            fh.write("closed")


def factory(greeting="made"):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await _plain(send, greeting.encode())

    return app


async def leak_descriptors(scope, receive, send):
    """resource_apps.leak_descriptors: the first worker to serve a request starts leaking
    every descriptor it can get."""
    if scope["type"] != "http":
        return
    from resource_apps import _leak_forever

    try:
        os.close(os.open(os.environ["LEAK_MARK"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        threading.Thread(target=_leak_forever, daemon=True).start()
    except OSError:
        pass  # another worker leaks, or this one has no descriptor left to tell
    await _plain(send, str(os.getpid()).encode())


async def unread(scope, receive, send):
    """unread_apps.app: each route's answer, reading the body only where the route says
    (only its first 1 KiB on /partial: the messages that hold it)."""
    import unread_apps

    if scope["type"] != "http":
        return
    body = b""
    if scope["path"] in ("/partial", "/read"):
        more = True
        while more and (scope["path"] == "/read" or len(body) < unread_apps.PARTIAL):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client went away")
            body += message["body"]
            more = message["more_body"]
    status, headers, answer = unread_apps.answer(scope["path"], io.BytesIO(body))
    await _start(send, int(status.split()[0]), headers + [("Content-Length", str(len(answer)))])
    await send({"type": "http.response.body", "body": answer})


def crash_soon_after_ready(delay=0.05):
    """boot_apps.crash_soon_after_ready: loads fine, says ready, then the process dies
    ``delay`` seconds later."""
    threading.Timer(delay, os._exit, (1,)).start()
    return hello


async def environ_report(scope, receive, send):
    """systemd_apps.environ_report: the systemd variables the worker and a child see."""
    import systemd_apps

    if scope["type"] != "http":
        return
    await _plain(send, systemd_apps.report(), "application/json")


def systemd_gated():
    """systemd_apps.gated(): loads once the test opens the gate."""
    import systemd_apps

    return systemd_apps.gated(environ_report)


def systemd_breakable():
    """systemd_apps.breakable(): fails to load while the test says it is broken."""
    import systemd_apps

    return systemd_apps.breakable(environ_report)


# --- ASGI itself ---------------------------------------------------------------------------

async def scope_json(scope, receive, send):
    """Answers with the scope, bytes as latin-1 text, and the body it received."""
    if scope["type"] != "http":
        return
    shown = _as_text({key: value for key, value in scope.items()})
    shown["body"] = (await _read_body(receive)).decode("latin-1")
    await _answer(send, json.dumps(shown).encode(), content_type=b"application/json")


async def body_messages(scope, receive, send):
    """Reads the body message by message, slowly, and answers what it saw."""
    if scope["type"] != "http":
        return
    digest = hashlib.sha256()
    size = messages = largest = 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body = message["body"]
        digest.update(body)
        size += len(body)
        largest = max(largest, len(body))
        messages += 1
        await asyncio.sleep(0.001)  # a consumer slower than the network: flow control
        if not message["more_body"]:
            break
    answer = {"size": size, "sha256": digest.hexdigest(), "messages": messages,
              "largest": largest, "pid": os.getpid()}
    await _answer(send, json.dumps(answer).encode(), content_type=b"application/json")


async def chunks(scope, receive, send):
    """Three chunks, no Content-Length; the second and third only once the file named by
    the query string exists (the test creates it when it has read the first)."""
    if scope["type"] != "http":
        return
    gate = scope["query_string"].decode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for number in range(3):
        if number:
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": f"part {number}\n".encode(),
                    "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def pathsend(scope, receive, send):
    """Sends the file named by the query string with http.response.pathsend."""
    if scope["type"] != "http":
        return
    assert "http.response.pathsend" in scope["extensions"]
    path = scope["query_string"].decode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(os.path.getsize(path)).encode())]})
    await send({"type": "http.response.pathsend", "path": path})


async def fail_after_start(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1000")]})
    await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
    raise RuntimeError("failed half way")


async def cancelled_before_start(scope, receive, send):
    if scope["type"] != "http":
        return
    asyncio.current_task().cancel()  # as a timeout or a task group of its own might
    await asyncio.sleep(0)  # raises CancelledError


async def no_response(scope, receive, send):
    if scope["type"] != "http":
        return


async def sleepy(scope, receive, send):
    """``await asyncio.sleep(N)`` for the N of the query string (a request waiting on I/O);
    without one, the answer comes at once, without awaiting anything but ``send``."""
    if scope["type"] != "http":
        return
    if scope["query_string"]:
        await asyncio.sleep(float(scope["query_string"]))
    await _answer(send, b"slept")


async def wait_for_disconnect(scope, receive, send):
    """Reads the body, then waits for http.disconnect and says so on stderr."""
    if scope["type"] != "http":
        return
    await _read_body(receive)
    print("waiting for disconnect", file=sys.stderr, flush=True)
    message = await receive()
    print(f"received {message['type']}", file=sys.stderr, flush=True)


async def send_after_disconnect(scope, receive, send):
    """Streams until send() fails, then says how it failed."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for _ in range(10000):
            await send({"type": "http.response.body", "body": b"y" * 65536, "more_body": True})
            await asyncio.sleep(0.001)
    except OSError as exc:
        print(f"send raised {type(exc).__name__} (an OSError)", file=sys.stderr, flush=True)
        raise


# --- lifespan ---------------------------------------------------------------------------

async def with_lifespan(scope, receive, send):
    """Startup puts a greeting in the state; shutdown writes LIFESPAN_MARK."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = f"hello from {os.getpid()}"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                mark = os.environ.get("LIFESPAN_MARK")
                if mark:
                    with open(mark, "a") as fh:
                        fh.write(f"shutdown {os.getpid()}\n")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _answer(send, scope["state"]["greeting"].encode())


async def startup_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _answer(send, b"never served")


async def without_lifespan(scope, receive, send):
    """An app written for http only, as many are: any other scope is an error."""
    assert scope["type"] == "http", f"unsupported scope {scope['type']}"
    await _answer(send, b"served without lifespan")


async def answer_kinds(scope, receive, send):
    """wsgi_apps.answer_kinds: a streaming result is body messages with more_body, a list
    one body message, write() a first message with more_body, a file pathsend."""
    if scope["type"] != "http":
        return
    kind = scope["query_string"].decode()
    plain = [("Content-Type", "text/plain")]

    async def stream(headers):
        await _start(send, 200, headers)
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    if kind == "generator":
        await stream(plain)
    elif kind == "write":
        await _start(send, 200, plain)
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
    elif kind == "sized":
        await stream([*plain, ("Content-Length", "7")])
    elif kind == "events":
        await _plain(send, b"data: one\n\n", "text/event-stream")
    elif kind == "own":
        await stream([*plain, ("X-Accel-Buffering", "yes")])
    elif kind == "own_no":
        await _start(send, 200, [*plain, ("X-Accel-Buffering", "no")])
        await send({"type": "http.response.body", "body": b"one two"})
    elif kind == "file":
        with tempfile.NamedTemporaryFile() as handle:
            handle.write(b"one two")
            handle.flush()
            await _start(send, 200, plain)
            await send({"type": "http.response.pathsend", "path": handle.name})
    else:
        await _plain(send, b"one two")


async def gated_stream(scope, receive, send):
    """wsgi_apps.gated_stream: FOLDER/sent once the first chunk is sent, then the second
    once FOLDER/release exists (up to 30 s), waiting without holding the loop."""
    if scope["type"] != "http":
        return
    folder = scope["query_string"].decode()
    await _start(send, 200, [("Content-Type", "text/plain")])
    await send({"type": "http.response.body", "body": b"first chunk\n", "more_body": True})
    open(os.path.join(folder, "sent"), "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(folder, "release")):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    else:
        await send({"type": "http.response.body", "body": b"second chunk\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


_TOGETHER = {"in": 0, "event": None}


async def together(scope, receive, send):
    """``/?N`` waits until N requests of this kind are in the app at once (at most 30 s),
    then answers ``together`` (``alone`` if they never were); ``/?0`` answers at once.
    What a test of concurrency waits on, instead of the clock."""
    if scope["type"] != "http":
        return
    wanted = int(scope["query_string"] or b"0")
    if not wanted:
        await _answer(send, b"together")
        return
    if _TOGETHER["event"] is None:
        _TOGETHER["event"] = asyncio.Event()
    event = _TOGETHER["event"]
    _TOGETHER["in"] += 1
    if _TOGETHER["in"] >= wanted:
        event.set()
    try:
        await asyncio.wait_for(event.wait(), 30)
    except asyncio.TimeoutError:
        await _answer(send, b"alone")
        return
    await _answer(send, b"together")
