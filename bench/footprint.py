"""What --preload saves: memory of the workers, and the time to the first answer.

    python bench/footprint.py                 # 3 runs of each case, medians
    python bench/footprint.py --runs 5 --workers 4 --requests 300 --only django

Each case is one app on one worker model, served by ``scgikit serve --workers N`` on a unix
socket in a temporary folder, with and without ``--preload``:

    django       tests/fixtureapps/frameworks/django_app.py (the app of test_frameworks.py), sync
    hello-sync   tests/fixtureapps/wsgi_apps.py:hello, sync
    hello-thr    the same, --worker threads --threads 4
    hello-aio    tests/fixtureapps/asgi_apps.py:hello, asyncio

Measured per run:

- first answer: from the exec of the server to the first answer (one request retried
  every 5 ms until it is answered);
- all ready: from the exec to the master's log line saying the last of the N workers is
  ready (``--log-level debug``);
- PSS: the proportional set size summed over the master and its workers
  (/proc/PID/smaps_rollup), after ``--requests`` requests from 8 client threads, so that every
  worker has served.  PSS counts a page shared by k processes as 1/k in each, so the sum is
  what the server takes from the machine; RSS would count the shared pages N+1 times.

Django, Flask and the others come from the test extras (pyproject.toml); Django must be
importable by the Python running this script.  Needs Linux (/proc).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtureapps"
sys.path.insert(0, str(ROOT / "src"))

from scgikit.protocol import encode_request  # noqa: E402

CASES = {
    "django": ("django_app:application", ("--worker", "sync")),
    "hello-sync": ("wsgi_apps:hello", ("--worker", "sync")),
    "hello-thr": ("wsgi_apps:hello", ("--worker", "threads", "--threads", "4")),
    "hello-aio": ("asgi_apps:hello", ("--worker", "asyncio")),
}
REQUEST = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
                          "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                          "HTTP_HOST": "localhost", "SERVER_PROTOCOL": "HTTP/1.1"}, 0)


def ask(path: str) -> bool:
    """One request; True when it was answered 200."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(REQUEST)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.startswith(b"Status: 200")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def one_run(case: str, preload: bool, workers: int, requests: int) -> tuple[float, float, float]:
    """(ms to the first answer, ms to all workers ready, MiB of PSS) of one server."""
    target, args = CASES[case]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "scgi.sock")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT / "src"), str(FIXTURES), str(FIXTURES / "frameworks")]))
        argv = [sys.executable, "-m", "scgikit", "serve", target, "--bind", f"unix:{path}",
                "--workers", str(workers), "--log-level", "debug", *args]
        if preload:
            argv.append("--preload")
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready_at: list[float] = []
        all_ready = threading.Event()

        def read_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if re.search(r"Worker \d+ ready", line):
                    ready_at.append(time.monotonic())
                    if len(ready_at) == workers:
                        all_ready.set()
                if "Traceback" in line or "[ERROR]" in line:
                    print(line.rstrip(), file=sys.stderr)

        threading.Thread(target=read_log, daemon=True).start()
        try:
            first = _first_answer(path, proc, started)
            if not all_ready.wait(60):
                raise RuntimeError(f"{case}: not all {workers} workers ready within 60 s")
            _load(path, requests)
            pids = [proc.pid, *children(proc.pid)]
            pss = sum(pss_kib(pid) for pid in pids) / 1024
            return first, (ready_at[workers - 1] - started) * 1000, pss
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _first_answer(path: str, proc: subprocess.Popen[str], started: float) -> float:
    deadline = started + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if ask(path):
                return (time.monotonic() - started) * 1000
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("no answer within 60 s")


def _load(path: str, requests: int, threads: int = 8) -> None:
    failures = []

    def run(count: int) -> None:
        for _ in range(count):
            if not ask(path):
                failures.append(1)

    pool = [threading.Thread(target=run, args=(requests // threads,)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    if failures:
        raise RuntimeError(f"{len(failures)} requests not answered 200")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--only", action="append", choices=sorted(CASES))
    options = parser.parse_args()
    print(f"{options.workers} workers, {options.requests} requests, medians of "
          f"{options.runs} runs; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| case | --preload | PSS, master + workers | first answer | all workers ready |")
    print("|---|---|---|---|---|")
    for case in options.only or CASES:
        runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for _ in range(options.runs):  # alternated, so that a change of load hits both
            for preload in runs:
                runs[preload].append(one_run(case, preload, options.workers, options.requests))
        for preload, measured in runs.items():
            first, ready, pss = (statistics.median(column) for column in zip(*measured))
            print(f"| {case} | {'yes' if preload else 'no'} | {pss:.1f} MiB | {first:.0f} ms | "
                  f"{ready:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
