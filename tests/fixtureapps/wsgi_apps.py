"""WSGI apps the server tests run: each proves one part of PEP 3333 handling."""

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from wsgiref.validate import validator


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def environ_json(environ, start_response):
    """Answers with the str-valued part of the environ, as JSON."""
    shown = {k: v for k, v in environ.items() if isinstance(v, str)}
    shown["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    shown["wsgi.multithread"] = environ["wsgi.multithread"]
    shown["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
    body = json.dumps(shown, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def echo_hash(environ, start_response):
    """Reads the body in pieces (as a streaming app would) and answers its length and sha256."""
    digest = hashlib.sha256()
    size = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
    extra = stream.read()  # at the end: must be b"", never bytes past CONTENT_LENGTH
    body = json.dumps({"size": size, "sha256": digest.hexdigest(), "extra": len(extra)})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def heap(environ, start_response):
    """Whether a 900 KiB block comes from an mmap of its own in this worker (heap_probe)."""
    import heap_probe

    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"mapped": heap_probe.mapped()}).encode()]


def lines(environ, start_response):
    """readline/readlines/iteration over wsgi.input."""
    stream = environ["wsgi.input"]
    first = stream.readline()
    second = stream.readline(3)
    rest = list(stream)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps([first.decode(), second.decode(), [r.decode() for r in rest]]).encode()]


def stream(environ, start_response):
    """A generated response of QUERY_STRING megabytes, 64 KiB at a time."""
    megabytes = int(environ.get("QUERY_STRING") or "1")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = b"x" * 65536
    for _ in range(megabytes * 16):
        yield block


def with_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"then returned"]


def file_wrapper(environ, start_response):
    fd, path = tempfile.mkstemp()
    os.write(fd, b"0123456789" * 100_000)
    os.close(fd)
    handle = open(path, "rb")
    os.unlink(path)
    handle.seek(10)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle)


def error(environ, start_response):
    raise RuntimeError("secret detail that must not reach the client")


def error_after_head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise RuntimeError("failed mid-body")


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Bad", "line\r\nInjected: yes")])
    return [b"never sent"]


def exc_info_replaces(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("oops")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


class Closing:
    """An iterable whose close() leaves a mark: PEP 3333 says it is always called."""

    def __init__(self, path, fail):
        self.path = path
        self.fail = fail

    def __iter__(self):
        yield b"one"
        if self.fail:
            raise RuntimeError("iteration failed")
        yield b"two"

    def close(self):
        with open(self.path, "w") as fh:
            fh.write("closed")


def closing(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(query["mark"], query.get("fail") == "1")


def slow(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or "1")
    print(f"slow request started in {os.getpid()}", file=environ["wsgi.errors"], flush=True)
    time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slow done"]


def pid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def env_var(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ.get("GREETING", "unset").encode() + b" " + os.getcwd().encode()]


def empty(environ, start_response):
    start_response("204 No Content", [])
    return []


validated_hello = validator(hello)
def echo_sized(environ, start_response):
    """PEP 3333 style: read exactly CONTENT_LENGTH, with a size argument."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


validated_echo = validator(echo_sized)
validated_environ = validator(environ_json)


def factory(greeting="made"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]

    return app


async def asgi_app(scope, receive, send):
    pass


def sometimes_bad(environ, start_response):
    """Good headers on most paths, an injected header on /bad: the head cache must not hide it."""
    value = "a\r\nInjected: yes" if environ["PATH_INFO"] == "/bad" else "a"
    start_response("200 OK", [("X-Value", value)])
    return [b"body"]


def big_file(environ, start_response):
    """64 MiB from a real file through wsgi.file_wrapper (sendfile)."""
    handle = tempfile.TemporaryFile()
    handle.truncate(64 << 20)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle)


def answer_kinds(environ, start_response):
    """One answer of each kind that X-Accel-Buffering depends on, chosen by QUERY_STRING:
    generator, write (the write() callable), list, sized (a generator with
    Content-Length), events (text/event-stream, a list), own (the app's own "yes", a
    generator), own_no (the app's own "no", a list), file (wsgi.file_wrapper)."""
    kind = environ.get("QUERY_STRING", "")
    plain = [("Content-Type", "text/plain")]
    if kind == "generator":
        start_response("200 OK", plain)
        return iter([b"one ", b"two"])
    if kind == "write":
        start_response("200 OK", plain)(b"one ")
        return [b"two"]
    if kind == "sized":
        start_response("200 OK", [*plain, ("Content-Length", "7")])
        return iter([b"one ", b"two"])
    if kind == "events":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return [b"data: one\n\n"]
    if kind == "own":
        start_response("200 OK", [*plain, ("X-Accel-Buffering", "yes")])
        return iter([b"one ", b"two"])
    if kind == "own_no":
        start_response("200 OK", [*plain, ("X-Accel-Buffering", "no")])
        return [b"one two"]
    if kind == "file":
        handle = tempfile.TemporaryFile()
        handle.write(b"one two")
        handle.seek(0)
        start_response("200 OK", plain)
        return environ["wsgi.file_wrapper"](handle)
    start_response("200 OK", plain)
    return [b"one two"]


def gated_stream(environ, start_response):
    """A stream whose first chunk goes at once and whose second waits until the test
    releases it: QUERY_STRING is a folder; once the first chunk is sent (the server asks
    for the next one only then) the app makes FOLDER/sent, then waits (up to 30 s) for
    FOLDER/release to exist."""
    folder = environ["QUERY_STRING"]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first chunk\n"
        open(os.path.join(folder, "sent"), "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(folder, "release")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        yield b"second chunk\n"

    return body()


_TOGETHER = threading.Condition()
_ARRIVED = [0]


def together(environ, start_response):
    """``/?N`` waits until N requests of this kind are in the app at once (at most 30 s),
    then answers ``together`` (``alone`` if they never were); ``/?0`` answers at once.
    What a test of concurrency waits on, instead of the clock."""
    wanted = int(environ.get("QUERY_STRING") or "0")
    met = True
    if wanted:
        with _TOGETHER:
            _ARRIVED[0] += 1
            _TOGETHER.notify_all()
            met = _TOGETHER.wait_for(lambda: _ARRIVED[0] >= wanted, timeout=30)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"together" if met else b"alone"]
