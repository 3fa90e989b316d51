"""Reliability under real load: reloads, crashes, stuck and recycled workers, memory growth.

Each test asserts the property that breaks (a failed request, a worker never replaced, a
leak) and records what it measured with ``figures.record``; ``scripts/reliability-report``
collects those figures into docs/reliability.md.  Every load is bounded in count and time
and every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections import Counter

import pytest
from figures import record
from floods import open_descriptors
from scgi_raw import request
from servers import wait_until, worker_pids

from scgikit.addresses import parse_address
from scgikit.protocol import ResponseError, encode_request


def kind(transport):
    return "unix" if transport.startswith("unix:") else "tcp"


class Load:
    """Requests one after another from ``threads`` threads until stopped, at most
    ``max_requests`` in all and for at most ``max_seconds``.  The app answers its worker's
    pid: each answer is kept as (time, pid), each failure as (time, what happened)."""

    def __init__(self, address, threads=2, max_requests=50_000, max_seconds=90.0):
        self.address = address
        self.answers: list[tuple[float, int, float]] = []  # answered at, pid, sent at
        self.failures: list[tuple[float, str]] = []
        self._max = max_requests
        self._deadline = time.monotonic() + max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if len(self.answers) + len(self.failures) >= self._max:
                    return
            started = time.monotonic()
            try:
                answer = request(self.address, "/", timeout=30)
                failure = None if answer.status == 200 else f"status {answer.status}"
            except Exception as exc:  # a reset, an empty or a cut answer: all are failures
                failure = repr(exc)
            with self._lock:
                if failure is None:
                    self.answers.append((time.monotonic(), int(answer.body), started))
                else:
                    self.failures.append((time.monotonic(), failure))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def served(self):
        with self._lock:
            return len(self.answers)

    def done(self):
        with self._lock:
            return len(self.answers) + len(self.failures)

    def first_answer_from(self, pids, since):
        """The time of the first answer after ``since`` from a worker not in ``pids``."""
        with self._lock:
            return next((at for at, pid, _ in self.answers if at >= since and pid not in pids),
                        None)


def two_workers(server, without=()):
    def check():
        pids = worker_pids(server.pid)
        return pids if len(pids) == 2 and pids.isdisjoint(without) else None

    try:
        return wait_until(check, timeout=20, message="2 workers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the log:\n{server.log}") from None


def test_ten_reloads_under_continuous_load_fail_no_request(serve, transport, model):
    server = serve("wsgi_apps:pid", "--workers", "2", bind=[transport])
    first = two_workers(server)
    with Load(server.address, threads=2, max_seconds=90) as load:
        wait_until(lambda: load.served() >= 50, timeout=30, message="load before the reloads")
        for generation in range(1, 11):
            seen = load.served()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(rf"generation {generation} ready;", timeout=30)
            wait_until(lambda seen=seen: load.served() >= seen + 20, timeout=30,
                       message=f"load across reload {generation}")
        last = two_workers(server, without=first)
        since = time.monotonic()
        wait_until(lambda: load.first_answer_from(set(), since) is not None, timeout=30,
                   message="load after the last reload")
    record("ten reloads (SIGHUP) under load", kind(transport), model=model, reloads=10,
           served=len(load.answers), failed=len(load.failures))
    assert load.failures == [], f"{load.failures}\n{server.log}"
    # A request sent once only the last generation is alive is answered by it (one sent
    # earlier may still be answered by an old worker finishing what it had taken).
    assert {pid for _, pid, sent in load.answers if sent >= since} <= last


def test_sigkill_of_a_worker_under_load_loses_at_most_what_it_held(serve, transport, model):
    """Three workers killed one after another: each may take the connections it held
    with it (the request in the app, one parked for its bytes), nothing else.  From the
    second kill on, the master's back-off (0.1 s, then doubled) delays the replacement:
    the first figure is the plain one."""
    server = serve("wsgi_apps:pid", "--workers", "2", bind=[transport])
    kills, resumed = [], []
    with Load(server.address, threads=2, max_seconds=60) as load:
        wait_until(lambda: load.served() >= 50, timeout=30, message="load before the kill")
        for _ in range(3):
            before = two_workers(server)
            victim = min(before)
            kills.append(time.monotonic())
            os.kill(victim, signal.SIGKILL)
            answered = wait_until(lambda b=before, k=kills[-1]: load.first_answer_from(b, k),
                                  timeout=20, message="an answer from the new worker")
            resumed.append(answered - kills[-1])
            server.wait_for_log(rf"Worker {victim} was killed by signal 9; replacing it")
    failed = [sum(1 for at, _ in load.failures if start <= at < end)
              for start, end in zip([0.0] + kills, kills + [float("inf")])]
    record("SIGKILL of a worker under load", kind(transport), model=model, kills=len(kills),
           served=len(load.answers), failed=len(load.failures),
           new_worker_answers_after_ms=round(resumed[0] * 1000),
           after_third_kill_ms=round(resumed[2] * 1000))
    assert failed[0] == 0, load.failures  # none before the first kill
    # At most what the killed worker held: the request in its app, and a connection it
    # had accepted whose bytes had not arrived yet (parked); the load has two clients.
    assert max(failed[1:]) <= 2, load.failures


@pytest.mark.models("sync", "asyncio", reason="threads ends the request past --timeout "
                   "itself, not the worker (test_request_timeout.py)")
def test_stuck_worker_is_killed_and_replaced_while_the_other_serves(serve, transport, model):
    server = serve("wsgi_apps:slow", "--workers", "2", "--timeout", "1", bind=[transport])
    before = two_workers(server)
    stuck = {}

    def stuck_request():
        try:
            stuck["answer"] = request(server.address, "/slow?5", timeout=30).status
        except Exception as exc:
            stuck["answer"] = repr(exc)

    thread = threading.Thread(target=stuck_request, daemon=True)
    started = time.monotonic()
    thread.start()
    (match,) = server.wait_for_log(r"slow request started in (\d+)")
    victim = int(match.group(1))
    assert victim in before
    served, cut, killed_at, replaced_at = 0, 0, None, None
    deadline = started + 20
    while replaced_at is None and time.monotonic() < deadline:
        try:
            answer = request(server.address, "/slow?0", timeout=10)
        except (OSError, ResponseError):
            answer = None
        if answer is not None:
            assert answer.status == 200 and answer.body == b"slow done"
        else:
            cut += 1
        now = time.monotonic()
        served += killed_at is None and answer is not None
        if killed_at is None and f"Worker {victim} stuck on one request" in server.log:
            killed_at = now
        if killed_at is not None:
            pids = worker_pids(server.pid)
            if len(pids) == 2 and victim not in pids:
                replaced_at = now
    thread.join(30)
    record("stuck worker past --timeout 1", kind(transport), model=model, workers=2,
           killed_after_s=killed_at and round(killed_at - started, 2),
           replaced_after_s=replaced_at and round(replaced_at - started, 2),
           served_while_stuck=served)
    assert killed_at is not None, server.log
    assert replaced_at is not None, server.log
    assert served > 0  # the other worker served while this one was stuck
    assert stuck["answer"] != 200  # killed, not answered after 5 s
    # A stuck sync worker or event loop takes nothing more.  A threads worker serves on
    # with its other threads, and the requests it holds are cut with it (docs/server.md):
    # this client sends one at a time, so one at most.
    assert cut <= (1 if model == "threads" else 0)
    assert killed_at - started < 5
    server.wait_for_log(rf"Worker {victim} was killed by signal 9; replacing it")


def test_recycling_under_load_fails_no_request(serve, transport, model):
    server = serve("wsgi_apps:pid", "--workers", "2", "--max-requests", "50",
                   "--max-requests-jitter", "10", bind=[transport])
    with Load(server.address, threads=2, max_requests=2000, max_seconds=60) as load:
        wait_until(lambda: load.done() >= 2000, timeout=60, message="2,000 requests")
    # A worker goes after its 50 to 60 requests, and serves what it holds then and what
    # is queued for it at that moment: with two clients, a few (63 has been seen once).
    # Taking what arrives while it serves those (81 was seen) must fail.  Each worker
    # that answered and is gone has logged its count.
    counts = Counter(pid for _, pid, _ in load.answers)
    least = (2000 - 2 * 64) // 64  # all but the two live workers were recycled

    def recycled():
        gone = set(counts) - worker_pids(server.pid)
        logged = {int(m[1]): int(m[2]) for m in re.finditer(
            r"\[(\d+)\] \[INFO\] Worker recycled after (\d+) requests", server.log)}
        return (gone, logged) if len(gone) >= least and gone <= set(logged) else None

    gone, logged = wait_until(recycled, timeout=10, message=f"{least} workers gone, each logged")
    record("recycling under load (--max-requests 50, jitter 10)", kind(transport),
           model=model, workers=2, requests=load.done(), failed=len(load.failures),
           recycled=len(gone))
    assert load.failures == [], load.failures[:5]
    differ = {pid: (logged[pid], counts[pid]) for pid in gone if logged[pid] != counts[pid]}
    assert not differ, f"logged and answered: {differ}\n{server.log}"
    assert all(50 <= counts[pid] <= 64 for pid in gone), counts
    assert all(counts[pid] <= 64 for pid in counts), counts


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


HELLO = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "DOCUMENT_URI": "/",
                        "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
                        "SERVER_NAME": "test", "SERVER_PORT": "80",
                        "REMOTE_ADDR": "127.0.0.1"}, 0)


def answered(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    answer = b"".join(chunks)
    return answer.startswith(b"Status: 200") and answer.endswith(b"hello")


def hammer(address, count):
    """``count`` hello requests, each sent whole on a fresh socket; returns the number of
    wrong answers."""
    addr = parse_address(address)
    wrong = 0
    for _ in range(count):
        with socket.socket(addr.family, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(addr.sockaddr)
            sock.sendall(HELLO)
            wrong += not answered(sock)
    return wrong


def hammer_parked(address, worker, count, batch=100):
    """``count`` hello requests that the worker must park: ``batch`` connections at a time
    send the first byte of their head, and the rest only once the worker holds them all."""
    addr = parse_address(address)
    wrong = 0
    for _ in range(count // batch):
        held = open_descriptors(worker)
        socks = []
        try:
            for _ in range(batch):
                sock = socket.socket(addr.family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.settimeout(10)
                sock.connect(addr.sockaddr)
                sock.sendall(HELLO[:1])
            wait_until(lambda held=held: open_descriptors(worker) >= held + batch, interval=0.001,
                       message="the worker to hold the batch")
            for sock in socks:
                sock.sendall(HELLO[1:])
            for sock in socks:
                wrong += not answered(sock)
        finally:
            for sock in socks:
                sock.close()
    return wrong


def test_memory_of_a_worker_does_not_grow_with_requests(serve, transport, model):
    """Requests sent whole, then requests the worker parks until their head is complete
    (as a unix client that connects before it writes often is): neither may leave memory
    behind."""
    server = serve("wsgi_apps:hello", "--workers", "1", bind=[transport])
    (worker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    assert hammer(server.address, 2000) == 0
    assert hammer_parked(server.address, worker, 2000) == 0
    started = time.monotonic()
    rss = [rss_kib(worker)]
    assert hammer(server.address, 20_000) == 0
    rss.append(rss_kib(worker))
    assert hammer_parked(server.address, worker, 20_000) == 0
    rss.append(rss_kib(worker))
    took = time.monotonic() - started
    assert worker_pids(server.pid) == {worker}  # the same worker, not a fresh one
    whole, parked = (rss[1] - rss[0]) * 5, (rss[2] - rss[1]) * 5  # per 100,000
    record("memory growth (one worker, hello)", kind(transport), model=model, requests=40_000,
           rss_kib=rss[2], growth_kib_per_100k_whole=whole,
           growth_kib_per_100k_parked=parked, seconds=round(took, 1))
    assert whole < 2048 and parked < 2048, f"RSS {rss} KiB, 20,000 requests apart"
