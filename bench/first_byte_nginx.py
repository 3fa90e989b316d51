"""Time to the first body byte through nginx of an answer that streams, with and without
``X-Accel-Buffering: no``.

    PYTHONPATH=src python3 bench/first_byte_nginx.py [--runs 5] [--models sync,asyncio]

The app sends a chunk, sleeps 1 s, sends another (no Content-Length).  Each model is served
twice behind nginx (the ``scgikit config nginx`` text in a temporary folder, as the tests
run it): by default (the header is sent, nginx passes the stream on as it comes) and with
``--front-end-buffering`` (no header: nginx buffers, ``scgi_buffering on``).  Each run is
one HTTP/1.0 request on a new connection; the figures are seconds from the request sent to
the HTTP head, the first body byte and the end, median of ``--runs`` (min-max beside).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def app(environ, start_response):
    """WSGI: a chunk, 1 s, another."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first\n"
        time.sleep(1)
        yield b"second\n"

    return body()


async def asgi_app(scope, receive, send):
    """ASGI: the same, awaiting its second."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    await asyncio.sleep(1)
    await send({"type": "http.response.body", "body": b"second\n"})


def one_run(port: int) -> tuple[float, float, float]:
    """(head, first body byte, end) in seconds after the request went."""
    head_at = first_at = None
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        started = time.monotonic()
        client.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        while chunk := client.recv(65536):
            now = time.monotonic() - started
            received += chunk
            if head_at is None and b"\r\n\r\n" in received:
                head_at = now
            if first_at is None and received.partition(b"\r\n\r\n")[2]:
                first_at = now
        end = time.monotonic() - started
    assert received.partition(b"\r\n\r\n")[2] == b"first\nsecond\n", received
    assert head_at is not None and first_at is not None
    return head_at, first_at, end


def measure(model: str, option: bool, runs: int) -> list[tuple[float, float, float]]:
    sys.path[:0] = [str(TESTS)]
    from frontends import FrontEnd
    from servers import ServerProcess

    here = Path(__file__).resolve()
    target = f"{here}:asgi_app" if model == "asyncio" else f"{here}:app"
    args = ["--workers", "1", "--worker", model]
    if option:
        args.append("--front-end-buffering")
    server = ServerProcess.scgikit(target, *args).start()
    front = FrontEnd("nginx", Path(tempfile.mkdtemp(prefix="scgikit-first-byte-")),
                     [server.address]).start()
    try:
        one_run(front.port)  # warm: the worker's first request
        return [one_run(front.port) for _ in range(runs)]
    finally:
        front.stop()
        server.stop()


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default="sync,threads,asyncio")
    options = parser.parse_args()
    print("| model | X-Accel-Buffering | head (s) | first body byte (s) | end (s) |")
    print("|---|---|---|---|---|")
    for model in options.models.split(","):
        for option in (True, False):
            results = measure(model, option, options.runs)
            columns = [summary([result[i] for result in results]) for i in range(3)]
            label = "not sent (--front-end-buffering)" if option else "no (default)"
            print(f"| {model} | {label} | " + " | ".join(columns) + " |", flush=True)


if __name__ == "__main__":
    main()
