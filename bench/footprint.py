"""What --preload saves: memory of the workers, and the time to the first answer; and
against uWSGI and the HTTP servers, the same hello app's footprint and start-up.

    python bench/footprint.py                 # 3 runs of each case, medians
    python bench/footprint.py --runs 5 --workers 4 --requests 300 --only django
    python bench/footprint.py --uwsgi --runs 5 --write   # hello against uWSGI, 2 workers
    python bench/footprint.py --http-peers --runs 5 --write   # and gunicorn, uvicorn, granian

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
measuring every server one after the other.  There every server serves bench/apps.py's
``app`` (``asgi_app`` on the ASGI cases), the app of bench/run, so that all of them import
the same module.  ``--http-peers`` does the same and adds the HTTP servers users would pick
instead, each as bench/run starts it (bench/run.py's ``server_argv``, bench/lineup.py's
table), as it runs by default (the app loaded in each worker), with the same workers,
answering HTTP/1.1 on a unix socket (the first answer and the requests over http.client):

    gunicorn      gunicorn sync (``--worker-class sync``), WSGI
    uvicorn       uvicorn, ASGI, ``--http httptools --loop uvloop``
    granian-wsgi  granian WSGI
    granian-asgi  granian ASGI, ``--loop uvloop``

Their rows give their own figures; bench/results.py takes scgikit's ratio to each of them
for the README (scgikit's sync rows over the WSGI servers, its asyncio rows over the ASGI
ones).  They are bench/run's peers, from the Python that bench/run finds (bench/.venv).
``--write`` puts that table into bench/RESULTS.md (or ``--results FILE``), as its section
"Footprint and start-up" (scripts/make-docs then carries it into docs/performance.md and
the README); ``bench/run --write`` rewrites that file whole, so run this after it.  ``--src``
serves another tree's scgikit (its src folder), to measure a change against the code before
it.

Measured per run:

- first answer: from the exec of the server to the first answer (one request retried
  every 5 ms until it is answered);
- all ready: from the exec to the master's log line saying the last of the N workers is
  ready (``--log-level debug``; uWSGI: its last "spawned uWSGI worker" line, or with
  --lazy-apps its last "WSGI app 0 ... ready"); "-" for the HTTP servers, which do not say
  it at the log level bench/run starts them with;
- PSS: the proportional set size summed over the master and its workers
  (/proc/PID/smaps_rollup), after ``--requests`` requests from 8 client threads, so that every
  worker has served; for an HTTP server, over its whole process tree (uvicorn's holds
  multiprocessing's resource tracker too).  PSS counts a page shared by k processes as 1/k
  in each, so the sum is what the server takes from the machine; RSS would count the shared
  pages N+1 times.  A shared library's pages are shared with every other process of the
  machine that maps it too (libpython with any other Python running), so other work moves
  PSS a little.

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
import functools
import http.client
import math
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtureapps"
sys.path.insert(0, str(ROOT / "src"))

import run as bench  # noqa: E402  (bench/run.py: how bench/run starts and asks a server)

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
#: The HTTP servers of --http-peers, by case: bench/run.py's names for them, whose command
#: lines it holds (bench/lineup.py's for granian).
HTTP_PEERS = {"gunicorn": "gunicorn sync", "uvicorn": "uvicorn", "granian-wsgi": "granian WSGI",
              "granian-asgi": "granian ASGI"}
#: Their packages, whose versions the RESULTS.md section gives.
PEER_PACKAGES = ("gunicorn", "uvicorn", "granian")
#: With --uwsgi or --http-peers every server serves bench/apps.py's app, as bench/run's do:
#: each fixture app's stand-in there.
BENCH_APPS = {"wsgi_apps:hello": "apps:app", "asgi_apps:hello": "apps:asgi_app"}
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
         "hello-aio-auto": "scgikit, ASGI app, no --worker", UWSGI: "uWSGI",
         **{case: name for case, name in HTTP_PEERS.items()}}
SECTION = "## Footprint and start-up"
RESULTS = ROOT / "bench" / "RESULTS.md"
REQUEST = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
                          "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                          "HTTP_HOST": "localhost", "SERVER_PROTOCOL": "HTTP/1.1"}, 0)

Figures = tuple[float, float, float]  # ms to the first answer, ms to all ready, MiB of PSS
#: What starts a server: its argv, its environment, the pattern of a worker's "ready" line
#: (None: it logs none), the folder to start it in.
Launch = tuple[list[str], dict[str, str], str | None, Path | None]


def ask(path: str) -> bool:
    """One SCGI request; True when it was answered 200."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(REQUEST)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.startswith(b"Status: 200")


def ask_http(path: str) -> bool:
    """One HTTP/1.1 request (bench/run's, http.client) on the unix socket ``path``; True when
    it was answered 200 with hello."""
    status, body = bench.http_request(f"unix:{path}", "GET", "/hello", b"", 30)
    return status == 200 and body == b"Hello, world!"


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


@functools.cache
def peer_python() -> Path:
    """The Python that has the HTTP servers: bench/run's choice (bench/.venv, made if need be)."""
    return bench.find_python(argparse.Namespace(venv=False), http_peers=True)


def peer_versions() -> str:
    """The HTTP servers' versions: "gunicorn 23.0.0, uvicorn 0.30.1, granian 1.6.0"."""
    code = ("import importlib.metadata as m; print(', '.join(f'{n} {m.version(n)}' for n in "
            f"{PEER_PACKAGES!r}))")
    return subprocess.run([str(peer_python()), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def command(case: str, preload: bool, workers: int, path: str, src: Path,
            bench_app: bool = False) -> Launch:
    """How to start the server of ``case``, listening on the unix socket ``path``; with
    ``bench_app``, serving bench/apps.py's app rather than the fixture app."""
    base = {name: value for name, value in os.environ.items()
            if name != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": PYCACHE}
    if case in HTTP_PEERS:
        argv, cwd = bench.server_argv(HTTP_PEERS[case], peer_python(), f"unix:{path}", workers)
        return argv, base, None, cwd
    if case == UWSGI:
        folder, module = ((ROOT / "bench", BENCH_APPS["wsgi_apps:hello"]) if bench_app
                          else (FIXTURES, "wsgi_apps:hello"))
        argv = [uwsgi_binary(), "--scgi-socket", path, "--pythonpath", str(folder),
                "--module", module, "--master", "--processes", str(workers),
                "--disable-logging", "--die-on-term", "--need-app"]
        if not preload:
            return [*argv, "--lazy-apps"], base, r"WSGI app 0 .* ready", None
        return argv, base, r"spawned uWSGI worker \d+", None
    target, args = CASES[case]
    folders = [src, ROOT / "bench"] if bench_app else [src, FIXTURES, FIXTURES / "frameworks"]
    env = dict(base, PYTHONPATH=os.pathsep.join(str(folder) for folder in folders))
    argv = [sys.executable, "-m", "scgikit", "serve",
            BENCH_APPS.get(target, target) if bench_app else target, "--bind", f"unix:{path}",
            "--workers", str(workers), "--log-level", "debug", *args]
    if preload:
        argv.append("--preload")
    return argv, env, r"Worker \d+ ready", None


def one_run(case: str, preload: bool, workers: int, requests: int,
            src: Path = ROOT / "src", bench_app: bool = False) -> Figures:
    """(ms to the first answer, ms to all workers ready, MiB of PSS) of one server; for an
    HTTP server, NaN ms to all ready (it does not say)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "server.sock")
        argv, env, ready_line, cwd = command(case, preload, workers, path, src, bench_app)
        asker = ask_http if case in HTTP_PEERS else ask
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        ready_at: list[float] = []
        all_ready = threading.Event()

        def read_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if ready_line and re.search(ready_line, line):
                    ready_at.append(time.monotonic())
                    if len(ready_at) == workers:
                        all_ready.set()
                if "Traceback" in line or "[ERROR]" in line:
                    print(line.rstrip(), file=sys.stderr)

        threading.Thread(target=read_log, daemon=True).start()
        try:
            first = _first_answer(asker, path, proc, started)
            if ready_line is None:
                _wait_for_processes(proc, workers, case)
            elif not all_ready.wait(60):
                raise RuntimeError(f"{case}: not all {workers} workers ready within 60 s")
            _load(asker, path, requests)
            if ready_line is None:  # an HTTP server: its whole tree
                pids = bench.tree(proc.pid)
            else:
                pids = [proc.pid, *children(proc.pid)]
                if len(pids) != workers + 1:
                    raise RuntimeError(f"{case}: {len(pids)} processes, not {workers + 1}")
            pss = sum(pss_kib(pid) for pid in pids) / 1024
            ready = (ready_at[workers - 1] - started) * 1000 if ready_line else float("nan")
            return first, ready, pss
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            try:  # what the server left behind (uvicorn's resource tracker)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _first_answer(asker: Callable[[str], bool], path: str, proc: subprocess.Popen[str],
                  started: float) -> float:
    deadline = started + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if asker(path):
                return (time.monotonic() - started) * 1000
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.005)
    raise RuntimeError("no answer within 60 s")


def _wait_for_processes(proc: subprocess.Popen[str], workers: int, case: str) -> None:
    """Until the server's tree holds its master and ``workers`` workers, at least: an HTTP
    server says nothing when its workers are up."""
    deadline = time.monotonic() + 60
    while len(bench.tree(proc.pid)) < workers + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{case}: not {workers + 1} processes within 60 s")
        time.sleep(0.005)


def _load(asker: Callable[[str], bool], path: str, requests: int, threads: int = 8) -> None:
    failures = []

    def run(count: int) -> None:
        for _ in range(count):
            if not asker(path):
                failures.append(1)

    pool = [threading.Thread(target=run, args=(requests // threads,)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    if failures:
        raise RuntimeError(f"{len(failures)} requests not answered 200")


def measure(cases: list[str], runs: int, workers: int, requests: int,
            src: Path, bench_app: bool = False) -> dict[tuple[str, bool], list[Figures]]:
    """Every case with and without --preload (an HTTP server as it runs by default only),
    ``runs`` times: each run measures them all one after the other, so that a change of the
    machine's load hits all of them.  A first run of each, not counted, compiles their
    modules into PYCACHE."""
    plan = [(case, preload) for case in cases
            for preload in ((False,) if case in HTTP_PEERS else (False, True))]
    for case, preload in plan:
        one_run(case, preload, workers, 16, src, bench_app)
    measured: dict[tuple[str, bool], list[Figures]] = {}
    for _ in range(runs):
        for case, preload in plan:
            measured.setdefault((case, preload), []).append(
                one_run(case, preload, workers, requests, src, bench_app))
    return measured


def _shown(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def plain_table(measured: dict[tuple[str, bool], list[Figures]]) -> str:
    lines = ["| case | --preload | PSS, master + workers | first answer | all workers ready |",
             "|---|---|---|---|---|"]
    for (case, preload), figures in measured.items():
        first, ready, pss = (statistics.median(column) for column in zip(*figures))
        lines.append(f"| {case} | {'yes' if preload else 'no'} | {pss:.1f} MiB | {first:.0f} ms "
                     f"| {_shown(ready, 0)} ms |")
    return "\n".join(lines)


def uwsgi_table(measured: dict[tuple[str, bool], list[Figures]], workers: int,
                requests: int) -> str:
    """The table of bench/RESULTS.md: a row per server and --preload, each scgikit figure
    followed by its ratio to uWSGI's (the median of the runs' own ratios); the HTTP servers'
    rows, after uWSGI's, give their own figures ("-": not measured)."""
    base = measured[UWSGI, True]
    lines = [f"### hello: {workers} workers, PSS after {requests} requests", "",
             "| server | PSS MiB | first answer ms | all workers ready ms |", "|---|---|---|---|"]
    for (case, preload), figures in measured.items():
        name = NAMES[case] + (", --preload" if preload and case not in (UWSGI, *HTTP_PEERS)
                              else "")
        if case == UWSGI and not preload:
            name += " --lazy-apps"
        cells = []
        for column, digits in ((2, 1), (0, 0), (1, 0)):
            value = statistics.median(run[column] for run in figures)
            cell = _shown(value, digits)
            if case not in (UWSGI, *HTTP_PEERS) and column != 1:
                ratio = statistics.median(ours[column] / theirs[column]
                                          for ours, theirs in zip(figures, base))
                cell += f" ({ratio:.2f}×)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(table: str, runs: int, command_line: str, load: tuple[float, float],
            peers: bool = False) -> str:
    """The RESULTS.md section around ``table``; ``peers``: the run has the HTTP servers."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{SECTION}\n\n"
            f"Measured on {datetime.date.today()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}: "
            f"`{command_line}`; each figure the median of {runs} runs, load average "
            f"{load[0]:.1f} at the start and {load[1]:.1f} at the end; uWSGI {uwsgi_version()}"
            + (f", {peer_versions()}" if peers else "") + ". The same hello app (bench/apps.py's "
            "app, or its asgi_app on the ASGI servers) on a unix socket, no front end"
            + ("; the HTTP servers started as bench/run starts them, each answering HTTP/1.1"
               if peers else "")
            + "; PSS: the proportional set size of the master and its workers added up "
            "(bench/footprint.py says how each figure is taken).\n\n"
            f"{table}\n\n"
            "Ratios in brackets are scgikit / uWSGI as it runs by default (the app loaded "
            "in its master, then forked, as with scgikit's --preload); each is the median of "
            "the runs' own ratios. The uWSGI --lazy-apps row loads the app in each worker, "
            "as scgikit does without --preload."
            + (" The HTTP servers (gunicorn's sync workers; uvicorn with httptools and "
               "uvloop; granian) run as they do by default, the app loaded in each worker; "
               "their rows give their own figures, PSS over their whole process tree, and "
               "no time to all workers ready, which they do not log." if peers else "")
            + "\n")


def write_section(text: str, file: Path = RESULTS) -> None:
    """Put ``text`` into ``file`` (bench/RESULTS.md) in place of its footprint section, or at
    its end."""
    results = file.read_text()
    if SECTION in results:
        before, rest = results.split(SECTION, 1)
        after = rest.split("\n## ", 1)
        results = before + text + ("\n## " + after[1] if len(after) == 2 else "")
    else:
        results = results.rstrip("\n") + "\n\n" + text
    file.write_text(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default 4; with --uwsgi or --http-peers, 2")
    parser.add_argument("--requests", type=int,
                        help="default 320; with --uwsgi or --http-peers, 2000")
    parser.add_argument("--only", action="append", choices=sorted([*CASES, UWSGI,
                                                                   *HTTP_PEERS]))
    parser.add_argument("--uwsgi", action="store_true",
                        help="the hello cases and uWSGI, with the ratios to uWSGI's figures")
    parser.add_argument("--http-peers", action="store_true",
                        help="--uwsgi, and the HTTP servers as bench/run starts them: "
                        "gunicorn sync, uvicorn (httptools, uvloop), granian WSGI and ASGI, "
                        "each with its own figures")
    parser.add_argument("--write", action="store_true",
                        help="with --uwsgi or --http-peers: write the table into "
                        "bench/RESULTS.md (or --results)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the file --write writes its section into (default: "
                        "bench/RESULTS.md)")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the src folder of the scgikit to serve (default: this tree's)")
    parser.add_argument("--uwsgi-binary", default="",
                        help="the uwsgi to run (default: bench/.venv's, else on PATH)")
    options = parser.parse_args()
    global UWSGI_BINARY
    UWSGI_BINARY = options.uwsgi_binary
    against = options.uwsgi or options.http_peers
    if options.write and not against:
        parser.error("--write writes the --uwsgi (or --http-peers) table")
    workers = options.workers or (2 if against else 4)
    requests = options.requests or (2000 if against else 320)
    everyone = [*HELLO, UWSGI, *(HTTP_PEERS if options.http_peers else ())]
    cases = options.only or (everyone if against else list(CASES))
    if against and UWSGI not in cases:
        cases.append(UWSGI)
    if not against and set(cases) & set(HTTP_PEERS):
        parser.error("the HTTP servers are measured with --http-peers")
    load = os.getloadavg()[0]
    print(f"{workers} workers, {requests} requests, medians of {options.runs} runs; Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}\n")
    measured = measure(cases, options.runs, workers, requests, options.src.resolve(), against)
    print(plain_table(measured), flush=True)
    if against:
        command_line = "python bench/footprint.py " + " ".join(sys.argv[1:])
        text = section(uwsgi_table(measured, workers, requests), options.runs,
                       command_line.strip(), (load, os.getloadavg()[0]),
                       any(case in HTTP_PEERS for case in cases))
        print("\n" + text)
        if options.write:
            write_section(text, options.results)


if __name__ == "__main__":
    main()
