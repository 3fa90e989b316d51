"""Idle and dripping clients, as an attacker or a broken network would make them.

Bounded in count and time: every connection is closed on exit, and the drip
thread stops by itself at its deadline.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

from scgi_raw import connect, request
from servers import wait_until

from scgikit.protocol import encode_request


def raise_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard or (hard == resource.RLIM_INFINITY and soft < needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Flood:
    """``idle`` connections that send nothing (or one byte, on TCP, so the kernel hands them
    over despite TCP_DEFER_ACCEPT) and ``drip`` clients that send a byte every ``interval``
    seconds: half of them drip their head, half a small body after a whole head."""

    def __init__(self, address: str, idle: int = 1000, drip: int = 50, interval: float = 0.5,
                 max_seconds: float = 120.0) -> None:
        self.address = address
        self.idle_count = idle
        self.drip_count = drip
        self.interval = interval
        self.deadline = time.monotonic() + max_seconds
        self.sockets: list[socket.socket] = []
        self.drips: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self) -> Flood:
        raise_descriptor_limit(self.idle_count + self.drip_count + 256)
        tcp = not self.address.startswith("unix:")
        for _ in range(self.idle_count):
            sock = connect(self.address)
            if tcp:
                sock.sendall(b"1")
            self.sockets.append(sock)
        head = encode_request({"REQUEST_METHOD": "POST", "REQUEST_URI": "/drip"}, 1000)
        for number in range(self.drip_count):
            sock = connect(self.address)
            self.sockets.append(sock)
            if number % 2:
                sock.sendall(head)  # then the body, a byte at a time
                self.drips.append((sock, b"x" * 1000))
            else:
                self.drips.append((sock, head + b"x" * 1000))
        self._thread.start()
        return self

    def _drip(self) -> None:
        sent = 0
        while not self._stop.wait(self.interval) and time.monotonic() < self.deadline:
            for sock, data in self.drips:
                if sent < len(data):
                    try:
                        sock.send(data[sent:sent + 1])
                    except OSError:
                        pass
            sent += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def latencies(address: str, count: int = 200, uri: str = "/") -> list[float]:
    """Seconds each of ``count`` normal requests took, one after another."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        answer = request(address, uri, timeout=30)
        took.append(time.monotonic() - started)
        assert answer.status == 200, answer.raw[:200]
    return took


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_descriptors(pid: int) -> int:
    """A new worker's open descriptors, once it holds no pipe of its master's.

    A worker starts with copies of the master's descriptors, closes the master's own
    pipes at once, and its end of the ready pipe only after it has told the master it
    is ready (which the master logs, a moment before that close).  A count taken before
    is too high, and a test waiting for "baseline + n" would wait for descriptors that
    are gone.
    """
    with open(f"/proc/{pid}/stat") as fh:
        master = int(fh.read().rsplit(")", 1)[1].split()[1])

    def pipes(of: int) -> set[str]:
        found = set()
        for name in os.listdir(f"/proc/{of}/fd"):
            try:
                link = os.readlink(f"/proc/{of}/fd/{name}")
            except OSError:
                continue  # closed while listed
            if int(name) > 2 and link.startswith("pipe:"):
                found.add(link)
        return found

    def count() -> int | None:
        return None if pipes(pid) & pipes(master) else open_descriptors(pid)

    return int(wait_until(count, message=f"worker {pid} to close the master's pipes"))


def p99_behind_flood(address: str, worker: int, idle: int = 1000, drip: int = 50) -> float:
    """The p99 latency of normal requests to ``address`` while one worker (pid ``worker``)
    holds ``idle`` idle and ``drip`` dripping connections (waited for, not assumed)."""
    baseline = settled_descriptors(worker)
    with Flood(address, idle=idle, drip=drip, interval=0.5):
        wait_until(lambda: open_descriptors(worker) >= baseline + idle + drip, timeout=30,
                   message="the worker to hold the whole flood")
        took = latencies(address, count=300)
    return percentile(took, 0.99)
