"""A flood of slow requests on 2 asyncio workers, with and without ``--max-concurrency``.

    PYTHONPATH=src python3 bench/max_concurrency.py [--requests 3000] [--clients 400] [--cap 32]

The app waits 50 ms (as on a database), then works about 2 ms of CPU, and answers its pid.
``--clients`` connections at a time (each one request, over a unix socket) until
``--requests`` are answered.  Without a cap a worker takes all it can from the listen
queue and runs it as tasks; with one, a worker at the cap stops accepting and the rest
wait in the kernel's queue, for the other worker or for this one once it holds fewer.
Printed: the split between the two workers, the most requests each had in its app at once,
the latency p50/p99, the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
_WORK = 20_000  # iterations of the app's CPU work: about 2 ms
_IN_APP = [0, 0]  # this worker's requests in the app now, and the most at once


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    _IN_APP[0] += 1
    _IN_APP[1] = max(_IN_APP)
    try:
        await asyncio.sleep(0.05)
        total = 0
        for i in range(_WORK):
            total += i * i
    finally:
        _IN_APP[0] -= 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"{os.getpid()} {_IN_APP[1]}".encode()})


async def _one(path: str, request: bytes) -> tuple[float, bytes]:
    started = time.monotonic()
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    return time.monotonic() - started, answer.partition(b"\r\n\r\n")[2]


async def _flood(path: str, requests: int, clients: int) -> tuple[list[float], list[bytes], float]:
    from scgikit.protocol import encode_request

    request = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
                              "SERVER_PROTOCOL": "HTTP/1.1"}, 0)
    slots = asyncio.Semaphore(clients)
    times: list[float] = []
    pids: list[bytes] = []

    async def one() -> None:
        async with slots:
            took, body = await _one(path, request)
        times.append(took)
        pids.append(body)

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(requests))), 300)
    return times, pids, time.monotonic() - started


def measure(cap: int, requests: int, clients: int) -> str:
    sys.path[:0] = [str(TESTS)]
    from servers import ServerProcess

    folder = tempfile.mkdtemp(prefix="scgikit-cap-")
    args = ["--workers", "2", "--worker", "asyncio", "--backlog", "4096",
            "--max-concurrency", str(cap)]
    server = ServerProcess.scgikit(f"{Path(__file__).resolve()}:app", *args,
                                   bind=[f"unix:{folder}/s.sock"]).start()
    try:
        asyncio.run(_flood(f"{folder}/s.sock", 50, 50))  # warm
        times, pids, wall = asyncio.run(_flood(f"{folder}/s.sock", requests, clients))
    finally:
        server.stop()
    split = sorted(collections.Counter(pid.split()[0] for pid in pids).values(), reverse=True)
    most: dict[bytes, int] = {}
    for body in pids:
        pid, peak = body.split()
        most[pid] = max(most.get(pid, 0), int(peak))
    peaks = " / ".join(str(most[pid]) for pid in sorted(most, key=most.__getitem__, reverse=True))
    q = statistics.quantiles(times, n=100)
    return (f"| {cap or 'none'} | {' / '.join(map(str, split))} | {peaks} | {q[49] * 1000:.0f} | "
            f"{q[98] * 1000:.0f} | {max(times) * 1000:.0f} | {wall:.2f} | {requests / wall:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=400)
    parser.add_argument("--cap", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    print(f"{options.requests} requests, {options.clients} at a time, 2 asyncio workers")
    print("| --max-concurrency | requests per worker | most in one worker's app at once | "
          "p50 ms | p99 ms | max ms | wall s | req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for _ in range(options.runs):
        for cap in (0, options.cap):
            print(measure(cap, options.requests, options.clients), flush=True)


if __name__ == "__main__":
    main()
