"""ASGI apps the asyncio worker tests run: each proves one part of the ASGI handling."""

import asyncio
import hashlib
import json
import os
import sys
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


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await _answer(send, b"hello")


async def pid(scope, receive, send):
    """The worker's pid, as the WSGI ``pid`` app answers it."""
    if scope["type"] != "http":
        return
    await _answer(send, str(os.getpid()).encode())


async def slow(scope, receive, send):
    """As the WSGI ``slow`` app: a blocking sleep of N seconds, which stops the loop."""
    if scope["type"] != "http":
        return
    print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
    time.sleep(float(scope["query_string"] or b"1"))
    await _answer(send, b"slow done")


async def scope_json(scope, receive, send):
    """Answers with the scope, bytes as latin-1 text, and the body it received."""
    if scope["type"] != "http":
        return
    shown = _plain({key: value for key, value in scope.items()})
    shown["body"] = (await _read_body(receive)).decode("latin-1")
    await _answer(send, json.dumps(shown).encode(), content_type=b"application/json")


async def heap(scope, receive, send):
    """Whether a 900 KiB block comes from an mmap of its own in this worker (heap_probe)."""
    import heap_probe

    if scope["type"] != "http":
        return
    await _answer(send, json.dumps({"mapped": heap_probe.mapped()}).encode(),
                  content_type=b"application/json")


async def echo_hash(scope, receive, send):
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


async def stream(scope, receive, send):
    """Three chunks, 0.4 s apart, no Content-Length."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for number in range(3):
        if number:
            await asyncio.sleep(0.4)
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


async def fail_before_start(scope, receive, send):
    if scope["type"] != "http":
        return
    raise RuntimeError("secret detail that must not reach the client")


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


async def bad_header(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-bad", b"line\r\nbreak")]})
    await send({"type": "http.response.body", "body": b"never"})


async def sleepy(scope, receive, send):
    """``await asyncio.sleep(N)`` for the N of the query string (a request waiting on I/O);
    without one, the answer comes at once, without awaiting anything but ``send``."""
    if scope["type"] != "http":
        return
    if scope["query_string"]:
        await asyncio.sleep(float(scope["query_string"]))
    await _answer(send, b"slept")


async def stuck(scope, receive, send):
    """A blocking call in an async view: the whole loop stops."""
    if scope["type"] != "http":
        return
    print("stuck request started", file=sys.stderr, flush=True)
    time.sleep(float(scope["query_string"] or b"5"))
    await _answer(send, b"unstuck")


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


async def leak_descriptors(scope, receive, send):
    """The first worker to serve a request starts leaking every descriptor it can get
    (resource_apps.leak_descriptors, as an ASGI app)."""
    if scope["type"] != "http":
        return
    from resource_apps import _leak_forever

    try:
        os.close(os.open(os.environ["LEAK_MARK"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        threading.Thread(target=_leak_forever, daemon=True).start()
    except OSError:
        pass  # another worker leaks, or this one has no descriptor left to tell
    await _answer(send, str(os.getpid()).encode())
