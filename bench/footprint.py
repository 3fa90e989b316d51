"""What --preload saves: memory of the workers, and the time to the first answer; and
against uWSGI, the same hello app's footprint and start-up.

    python bench/footprint.py                 # 3 runs of each case, medians
    python bench/footprint.py --runs 5 --workers 4 --requests 300 --only django
    python bench/footprint.py --uwsgi --runs 5 --write   # hello against uWSGI, 2 workers

Each case is one app on one worker model, served by ``scgikit serve --workers N`` on a unix
socket in a temporary folder, with and without ``--preload``:

    django       tests/fixtureapps/frameworks/django_app.py (the app of test_frameworks.py), sync
    hello-sync   tests/fixtureapps/wsgi_apps.py:hello, sync
    hello-thr    the same, --worker threads --threads 4
    hello-aio    tests/fixtureapps/asgi_apps.py:hello, asyncio
    hello-aio-auto  the same without --worker asyncio: the model told from the app, which
                 the master knows only with --preload, so the workers import asyncio
    uwsgi        wsgi_apps:hello on uWSGI (``--scgi-socket PATH --master --processes N
                 --disable-logging``), which loads the app in its master and forks, as
                 scgikit's --preload does; without --preload, with ``--lazy-apps``

``--uwsgi`` runs the hello cases and uWSGI, with 2 workers and 2,000 requests unless
told otherwise, and adds each scgikit figure's ratio to uWSGI's (uWSGI as it runs by
default, the app loaded in its master): the median of the runs' own ratios, each run
measuring every server one after the other.  ``--write`` puts that table into
bench/RESULTS.md, as its section "Footprint and start-up" (scripts/make-docs then carries it
into docs/performance.md); ``bench/run --write`` rewrites that file whole, so run this after
it.  ``--src`` serves another tree's scgikit (its src folder), to
measure a change against the code before it.

Measured per run:

- first answer: from the exec of the server to the first answer (one request retried
  every 5 ms until it is answered);
- all ready: from the exec to the master's log line saying the last of the N workers is
  ready (``--log-level debug``; uWSGI: its last "spawned uWSGI worker" line, or with
  --lazy-apps its last "WSGI app 0 ... ready");
- PSS: the proportional set size summed over the master and its workers
  (/proc/PID/smaps_rollup), after ``--requests`` requests from 8 client threads, so that every
  worker has served.  PSS counts a page shared by k processes as 1/k in each, so the sum is
  what the server takes from the machine; RSS would count the shared pages N+1 times.  A
  shared library's pages are shared with every other process of the machine that maps
  it too (libpython with any other Python running), so other work moves PSS a little.

Each server's Python finds its modules compiled (in a temporary PYTHONPYCACHEPREFIX that a
first, uncounted run fills), as an installed package has them.

Django, Flask and the others come from the test extras (pyproject.toml); Django must be
importable by the Python running this script; uWSGI is bench/.venv's (``bench/run``
installs it there), else the one on PATH, unless ``--uwsgi-binary`` names one.  Needs Linux (/proc).
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import platform
import re
import shutil
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
    "hello-aio-auto": ("asgi_apps:hello", ()),
}
UWSGI = "uwsgi"
UWSGI_BINARY = ""  # --uwsgi-binary
#: Every server's Python writes and reads its compiled modules here (PYTHONPYCACHEPREFIX),
#: as an installed package has them, even where PYTHONDONTWRITEBYTECODE is set, and never
#: in the trees it serves; ``measure`` warms it up first.
PYCACHE = tempfile.mkdtemp(prefix="footprint-pycache-")
atexit.register(shutil.rmtree, PYCACHE, True)
HELLO = ("hello-sync", "hello-thr", "hello-aio", "hello-aio-auto")
#: The rows of the RESULTS.md table, by case.
NAMES = {"django": "scgikit --worker sync, Django", "hello-sync": "scgikit --worker sync",
         "hello-thr": "scgikit --worker threads --threads 4",
         "hello-aio": "scgikit --worker asyncio (ASGI)",
         "hello-aio-auto": "scgikit, ASGI app, no --worker", UWSGI: "uWSGI"}
SECTION = "## Footprint and start-up"
RESULTS = ROOT / "bench" / "RESULTS.md"
REQUEST = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
                          "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                          "HTTP_HOST": "localhost", "SERVER_PROTOCOL": "HTTP/1.1"}, 0)

Figures = tuple[float, float, float]  # ms to the first answer, ms to all ready, MiB of PSS


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


def uwsgi_binary() -> str:
    """--uwsgi-binary, else bench/.venv's uwsgi, else the one on PATH."""
    beside = ROOT / "bench" / ".venv" / "bin" / "uwsgi"
    found = UWSGI_BINARY or (str(beside) if beside.exists() else shutil.which("uwsgi"))
    if not found:
        sys.exit("footprint: no uwsgi in bench/.venv/bin or on PATH (bench/run installs "
                 "it); or give --uwsgi-binary")
    return found


def uwsgi_version() -> str:
    return subprocess.run([uwsgi_binary(), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def command(case: str, preload: bool, workers: int, path: str, src: Path) -> tuple[
        list[str], dict[str, str], str]:
    """The server's argv, its environment, and the pattern of a worker's "ready" line."""
    base = {name: value for name, value in os.environ.items()
            if name != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": PYCACHE}
    if case == UWSGI:
        argv = [uwsgi_binary(), "--scgi-socket", path, "--pythonpath", str(FIXTURES),
                "--module", "wsgi_apps:hello", "--master", "--processes", str(workers),
                "--disable-logging", "--die-on-term", "--need-app"]
        if not preload:
            return [*argv, "--lazy-apps"], base, r"WSGI app 0 .* ready"
        return argv, base, r"spawned uWSGI worker \d+"
    target, args = CASES[case]
    env = dict(base, PYTHONPATH=os.pathsep.join(
        [str(src), str(FIXTURES), str(FIXTURES / "frameworks")]))
    argv = [sys.executable, "-m", "scgikit", "serve", target, "--bind", f"unix:{path}",
            "--workers", str(workers), "--log-level", "debug", *args]
    if preload:
        argv.append("--preload")
    return argv, env, r"Worker \d+ ready"


def one_run(case: str, preload: bool, workers: int, requests: int,
            src: Path = ROOT / "src") -> Figures:
    """(ms to the first answer, ms to all workers ready, MiB of PSS) of one server."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "scgi.sock")
        argv, env, ready_line = command(case, preload, workers, path, src)
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready_at: list[float] = []
        all_ready = threading.Event()

        def read_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if re.search(ready_line, line):
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
            if len(pids) != workers + 1:
                raise RuntimeError(f"{case}: {len(pids)} processes, not {workers + 1}")
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


def measure(cases: list[str], runs: int, workers: int, requests: int,
            src: Path) -> dict[tuple[str, bool], list[Figures]]:
    """Every case with and without --preload, ``runs`` times: each run measures them all
    one after the other, so that a change of the machine's load hits all of them.  A first
    run of each, not counted, compiles their modules into PYCACHE."""
    for case in cases:
        for preload in (False, True):
            one_run(case, preload, workers, 16, src)
    measured: dict[tuple[str, bool], list[Figures]] = {}
    for _ in range(runs):
        for case in cases:
            for preload in (False, True):
                measured.setdefault((case, preload), []).append(
                    one_run(case, preload, workers, requests, src))
    return measured


def plain_table(measured: dict[tuple[str, bool], list[Figures]]) -> str:
    lines = ["| case | --preload | PSS, master + workers | first answer | all workers ready |",
             "|---|---|---|---|---|"]
    for (case, preload), figures in measured.items():
        first, ready, pss = (statistics.median(column) for column in zip(*figures))
        lines.append(f"| {case} | {'yes' if preload else 'no'} | {pss:.1f} MiB | {first:.0f} ms "
                     f"| {ready:.0f} ms |")
    return "\n".join(lines)


def uwsgi_table(measured: dict[tuple[str, bool], list[Figures]], workers: int,
                requests: int) -> str:
    """The table of bench/RESULTS.md: a row per server and --preload, each scgikit figure
    followed by its ratio to uWSGI's (the median of the runs' own ratios)."""
    base = measured[UWSGI, True]
    lines = [f"### hello: {workers} workers, PSS after {requests} requests", "",
             "| server | PSS MiB | first answer ms | all workers ready ms |", "|---|---|---|---|"]
    for (case, preload), figures in measured.items():
        name = NAMES[case] + (", --preload" if preload and case != UWSGI else "")
        if case == UWSGI and not preload:
            name += " --lazy-apps"
        cells = []
        for column, digits in ((2, 1), (0, 0), (1, 0)):
            value = statistics.median(run[column] for run in figures)
            cell = f"{value:.{digits}f}"
            if case != UWSGI and column != 1:
                ratio = statistics.median(ours[column] / theirs[column]
                                          for ours, theirs in zip(figures, base))
                cell += f" ({ratio:.2f}×)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(table: str, runs: int, command_line: str, load: tuple[float, float]) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{SECTION}\n\n"
            f"Measured on {datetime.date.today()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}: "
            f"`{command_line}`; each figure the median of {runs} runs, load average "
            f"{load[0]:.1f} at the start and {load[1]:.1f} at the end; uWSGI {uwsgi_version()}. "
            "The same hello app "
            "(tests/fixtureapps) on a unix socket, no front end; PSS: the proportional set "
            "size of the master and its workers added up (bench/footprint.py says how each "
            "figure is taken).\n\n"
            f"{table}\n\n"
            "Ratios in brackets are scgikit / uWSGI as it runs by default (the app loaded "
            "in its master, then forked, as with scgikit's --preload); each is the median of "
            "the runs' own ratios. The uWSGI --lazy-apps row loads the app in each worker, "
            "as scgikit does without --preload.\n")


def write_section(text: str) -> None:
    """Put ``text`` into bench/RESULTS.md in place of its footprint section, or at its end."""
    results = RESULTS.read_text()
    if SECTION in results:
        before, rest = results.split(SECTION, 1)
        after = rest.split("\n## ", 1)
        results = before + text + ("\n## " + after[1] if len(after) == 2 else "")
    else:
        results = results.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default 4; with --uwsgi, 2")
    parser.add_argument("--requests", type=int, help="default 320; with --uwsgi, 2000")
    parser.add_argument("--only", action="append", choices=sorted([*CASES, UWSGI]))
    parser.add_argument("--uwsgi", action="store_true",
                        help="the hello cases and uWSGI, with the ratios to uWSGI's figures")
    parser.add_argument("--write", action="store_true",
                        help="with --uwsgi: write the table into bench/RESULTS.md")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the src folder of the scgikit to serve (default: this tree's)")
    parser.add_argument("--uwsgi-binary", default="",
                        help="the uwsgi to run (default: bench/.venv's, else on PATH)")
    options = parser.parse_args()
    global UWSGI_BINARY
    UWSGI_BINARY = options.uwsgi_binary
    if options.write and not options.uwsgi:
        parser.error("--write writes the --uwsgi table")
    workers = options.workers or (2 if options.uwsgi else 4)
    requests = options.requests or (2000 if options.uwsgi else 320)
    cases = options.only or ([*HELLO, UWSGI] if options.uwsgi else list(CASES))
    if options.uwsgi and UWSGI not in cases:
        cases.append(UWSGI)
    load = os.getloadavg()[0]
    print(f"{workers} workers, {requests} requests, medians of {options.runs} runs; Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}\n")
    measured = measure(cases, options.runs, workers, requests, options.src.resolve())
    print(plain_table(measured), flush=True)
    if options.uwsgi:
        command_line = "python bench/footprint.py " + " ".join(sys.argv[1:])
        text = section(uwsgi_table(measured, workers, requests), options.runs,
                       command_line.strip(), (load, os.getloadavg()[0]))
        print("\n" + text)
        if options.write:
            write_section(text)


if __name__ == "__main__":
    main()
