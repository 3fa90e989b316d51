"""scgikit and its peers side by side, in one run: `bench/run [--smoke] [--write]`.

Each server runs the same app (bench/apps.py) with the same number of worker
processes, on 127.0.0.1, one server at a time.  For every workload it measures:

* through nginx with wrk: requests/s, latency p50 and p99;
* the backend's CPU time per request: user + system time of the server's whole
  process tree (from /proc, reaped children included) divided by the requests
  it served during that wrk run;
* directly over SCGI, without nginx, with bench/scgi-load.c (C, threads): requests/s.

The HTTP servers users would pick instead (gunicorn, uvicorn, granian) run behind nginx's
proxy_pass with a keepalive upstream, in a section of their own (--http-peers).  Two more
sections (bench/lineup.py holds their servers): the I/O-bound workload, a request that waits
10 ms, on threaded and asyncio servers (--io-bound), and the frameworks, Django and FastAPI,
on scgikit and the HTTP servers (--frameworks).  With --write, bench/chart.py draws
scgikit's ratios as docs/performance.svg.

and prints one table per workload with the ratio scgikit / peer for each figure.
Timing never fails the run; a server that does not start or answers wrongly does.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import http.client
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lineup

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = ["scgi==2.2", "flup>=1.0.3", "aioscgi>=2.3", "uwsgi>=2.0", "uvloop>=0.19"]
# only for the sections that run them: the HTTP servers (--http-peers, --io-bound), the
# frameworks (--frameworks) and the chart (--write)
HTTP_PEERS = ["gunicorn>=22", "uvicorn>=0.30", "httptools>=0.6", "granian>=1.6"]
FRAMEWORKS = ["django>=4.2", "fastapi>=0.110"]
CHART = ["matplotlib>=3.7"]
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Workload:
    name: str
    method: str
    path: str
    body: bytes = b""
    expect: int = 13            # body bytes in a correct answer
    connections: int = 32       # wrk connections through nginx
    threads: int = 16           # direct load generator threads
    servers: tuple[str, ...] = ()  # empty: every server


WORKLOADS = [
    Workload("hello", "GET", "/hello"),
    Workload("echo-64k", "POST", "/echo", body=b"e" * 65536, expect=65536),
    Workload("1mb", "GET", "/1mb", expect=1 << 20, connections=8, threads=4),
    Workload("50mb", "GET", "/50mb", expect=50 << 20, connections=2, threads=2),
    Workload("classic-hello", "GET", "/hello", servers=("scgikit-classic", "scgi 2.2")),
]
# Each request waits 10 ms (/sleep); its servers are bench/lineup.py's IO_BOUND.
IO_WORKLOADS = [Workload("io-64", "GET", "/sleep", connections=64),
                Workload("io-256", "GET", "/sleep", connections=256)]
FRAMEWORK_WORKLOADS = [
    Workload("django", "GET", "/row", expect=46, connections=64,
             servers=tuple(s.name for s in lineup.FRAMEWORKS if "Django" in s.name)),
    Workload("fastapi", "GET", "/json", expect=43, connections=64,
             servers=tuple(s.name for s in lineup.FRAMEWORKS if "FastAPI" in s.name)),
]
# --only's names for a whole section
SECTION_NAMES = {"io-bound": IO_WORKLOADS, "frameworks": FRAMEWORK_WORKLOADS}
SERVERS = ["scgikit", "uWSGI", "scgi 2.2", "flup prefork", "flup threads", "aioscgi"]
CLASSIC_SERVERS = ["scgikit-classic", "scgi 2.2"]
STATS = "scgikit --stats"  # the same server counting Prometheus metrics (bench/run --stats)
# scgikit's other worker models, against its prefork sync model and the peer of each kind.
MODELS = {
    "scgikit threads ×4, WSGI": ("bench/apps.py:app", ["--worker", "threads", "--threads", "4"]),
    "scgikit asyncio, ASGI (uvloop)": ("bench/apps.py:asgi_app", ["--loop", "uvloop"]),
    "scgikit asyncio, ASGI (asyncio loop)": ("bench/apps.py:asgi_app", ["--loop", "asyncio"]),
    # The master routes each request to its session's worker (every request passes it).
    "scgikit sync, --session-affinity": ("bench/apps.py:app", ["--session-affinity"]),
}
MODEL_PEERS = {"scgikit threads ×4, WSGI": "flup threads",
               "scgikit asyncio, ASGI (asyncio loop)": "aioscgi"}
MODEL_WORKLOADS = ("hello", "echo-64k")
# The HTTP servers, behind nginx's proxy_pass, each beside scgikit's model of its kind.
ASYNC = "scgikit asyncio, ASGI (uvloop)"
# uvicorn again, with nginx opening a connection per request as scgi_pass does: the
# difference from the row above is what the connection per request costs.
UVICORN_CLOSE = "uvicorn, a connection per request"
HTTP_SERVERS = {"gunicorn sync": "scgikit", "gunicorn gthread ×4": "scgikit",
                "granian WSGI": "scgikit", "uvicorn": ASYNC, UVICORN_CLOSE: ASYNC,
                "granian ASGI": ASYNC}
TRANSPORTS = ("tcp", "unix")


# --- environment -----------------------------------------------------------------------------

def find_python(args: argparse.Namespace, http_peers: bool = False, frameworks: bool = False,
                chart: bool = False) -> Path:
    """A Python that has scgikit and every peer: this one if it has, else bench/.venv.

    The HTTP peers (gunicorn, uvicorn, granian), the frameworks (Django, FastAPI) and
    matplotlib are asked for only when the run includes what needs them.
    """
    probe = "import scgi.scgi_server, flup.server.scgi_fork, aioscgi, uvloop, scgikit"
    peers = list(PEERS)
    for wanted, modules, packages in ((http_peers, "gunicorn, uvicorn, httptools, granian",
                                       HTTP_PEERS), (frameworks, "django, fastapi", FRAMEWORKS),
                                      (chart, "matplotlib", CHART)):
        if wanted:
            probe += ", " + modules
            peers += packages
    here = Path(sys.executable)
    if not args.venv and _works(here, probe) and _tool(here, "uwsgi") and _tool(here, "aioscgi"):
        return here
    venv = HERE / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench: creating {venv} with {', '.join(peers)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not (_works(python, probe) and _tool(python, "uwsgi")):
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(REPO), *peers],
                       check=True)
    return python


def _works(python: Path, code: str) -> bool:
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def _tool(python: Path, name: str) -> str | None:
    beside = python.parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    return found if found and python == Path(sys.executable) else None


def need_debian_tools() -> None:
    missing = [t for t in ("nginx", "wrk", "gcc") if not shutil.which(t)
               and not Path(f"/usr/sbin/{t}").exists()]
    if missing and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        packages = {"nginx": "nginx-light", "wrk": "wrk", "gcc": "gcc"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *(packages[t] for t in missing)],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    elif missing:
        sys.exit(f"bench: install {' '.join(missing)} first (Debian: nginx-light wrk gcc)")


# --- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    wait_backend(f"127.0.0.1:{port}", proc, what, timeout)


def wait_backend(backend: str, proc: subprocess.Popen[bytes], what: str,
                 timeout: float = 30, over_http: bool = False) -> None:
    """Until ``backend`` accepts a connection, or for an HTTP server, answers GET /hello.

    An HTTP server's master may listen before any worker accepts: a request proves more.
    """
    unix = backend.startswith("unix:")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if over_http:
            try:
                http_request(backend, "GET", "/hello", b"", max(0.1, deadline - time.monotonic()))
                return
            except (OSError, http.client.HTTPException):
                pass
        else:
            with socket.socket(socket.AF_UNIX if unix else socket.AF_INET) as sock:
                target = backend[5:] if unix else ("127.0.0.1", int(backend.rpartition(":")[2]))
                if sock.connect_ex(target) == 0:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {backend} within {timeout} s")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: the path instead of a host."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def http_request(backend: str, method: str, path: str, body: bytes,
                 timeout: float) -> tuple[int, bytes]:
    """One HTTP request straight to ``backend`` ("127.0.0.1:PORT" or "unix:PATH")."""
    if backend.startswith("unix:"):
        conn: http.client.HTTPConnection = UnixHTTPConnection(backend[5:], timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", int(backend.rpartition(":")[2]),
                                          timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def start(argv: list[str], cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **env} if env else None)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for signum, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, signum)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def server_argv(name: str, python: Path, backend: str, workers: int) -> tuple[list[str], Path]:
    """How to start ``name`` listening on ``backend`` ("127.0.0.1:PORT" or "unix:PATH")."""
    py = str(python)
    unix = backend.startswith("unix:")
    short = backend if unix else backend.rpartition(":")[2]  # what servers.py takes
    if name in ("scgikit", "scgikit-classic", STATS):
        target = "bench/apps.py:app" if name != "scgikit-classic" else "bench/classic.py:Handler"
        stats = ["--stats", f"127.0.0.1:{free_port()}"] if name == STATS else []
        return [py, "-m", "scgikit", "serve", target, "--workers", str(workers), "--bind",
                backend, "--log-level", "warning", *stats], REPO
    if name == "uWSGI":
        uwsgi = _tool(python, "uwsgi") or "uwsgi"
        return [uwsgi, "--scgi-socket", backend[5:] if unix else backend, "--wsgi-file",
                str(HERE / "apps.py"), "--callable", "app", "--master", "--processes",
                str(workers), "--disable-logging", "--die-on-term", "--buffer-size", "65535"], HERE
    if name == "aioscgi":
        aioscgi = _tool(python, "aioscgi") or "aioscgi"
        where = ["--unix-socket", backend[5:]] if unix else ["--tcp", backend]
        return [aioscgi, "--base-uri", "", *where, "apps:asgi_app"], HERE
    if name in ("gunicorn sync", "gunicorn gthread ×4"):
        threads = ["--worker-class", "gthread", "--threads", "4"] if "gthread" in name else [
            "--worker-class", "sync"]
        return [py, "-m", "gunicorn", "--workers", str(workers), "--bind", backend,
                "--log-level", "warning", *threads, "apps:app"], HERE
    if name in ("uvicorn", UVICORN_CLOSE):
        where = ["--uds", backend[5:]] if unix else ["--host", "127.0.0.1", "--port", short]
        return [py, "-m", "uvicorn", "--workers", str(workers), "--http", "httptools", "--loop",
                "uvloop", "--log-level", "warning", "--no-access-log", *where,
                "apps:asgi_app"], HERE
    if name in MODELS:
        target, options = MODELS[name]
        return [py, "-m", "scgikit", "serve", target, "--workers", str(workers), "--bind",
                backend, "--log-level", "warning", *options], REPO
    if lineup.known(name):
        return lineup.argv(name, python, _tool(python, "uwsgi") or "uwsgi", backend, workers)
    kind = {"scgi 2.2": "scgi22", "flup prefork": "flup-fork", "flup threads": "flup-threads"}
    return [py, str(HERE / "servers.py"), kind[name], short, str(workers)], HERE


# --- measurements --------------------------------------------------------------------------------

def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """user + system seconds of the tree under root, including its reaped children.

    A live process's own time comes from its CPU-time clock, in nanoseconds, with its
    threads' (those that have ended too).  /proc's figures are in clock ticks (10 ms): a
    2-second measurement of 40,000 requests is some 70 ticks, so each tick lost to the
    rounding at either end moved the CPU per request by over 1%.  Reaped children's time
    is in ticks only.
    """
    total = 0.0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[11:15] are utime stime cutime cstime (stat fields 14-17)
        own = process_cpu(pid)
        if own is None:
            own = (int(fields[11]) + int(fields[12])) / TICK
        total += own + (int(fields[13]) + int(fields[14])) / TICK
    return total


def process_cpu(pid: int) -> float | None:
    """The CPU seconds process ``pid`` has used, from its CPU-time clock (None: not there)."""
    clock = process_clock(pid)
    if clock is None:
        return None
    try:
        return time.clock_gettime_ns(clock) / 1e9
    except OSError:  # gone meanwhile
        return None


def process_clock(pid: int) -> int | None:
    """clock_getcpuclockid(3) for ``pid``, which Python's time module does not offer."""
    getcpuclockid = _clock_getcpuclockid()
    clock = ctypes.c_int()
    if getcpuclockid is None or getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    return clock.value


@functools.cache
def _clock_getcpuclockid() -> Any:
    """The C library's clock_getcpuclockid, looked up once (None where there is none)."""
    try:
        return ctypes.CDLL(None).clock_getcpuclockid
    except (OSError, AttributeError):
        return None


def peak_rss(root: int) -> int:
    peak = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return peak


def nginx_config(folder: Path, port: int, backend: str, over_http: bool = False,
                 keepalive: bool = True) -> Path:
    """nginx in front of ``backend``: scgi_pass, or for an HTTP server proxy_pass to an
    upstream that keeps 32 connections open (HTTP/1.1, no Connection: close passed on),
    or, without ``keepalive``, that opens one per request (nginx's default)."""
    temp = "".join(f"    {k}_temp_path {folder}/{k};\n"
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    upstream, location = "", ("            include /etc/nginx/scgi_params;\n"
                              f"            scgi_pass {backend};\n")
    if over_http:
        upstream = (f"    upstream backend {{\n        server {backend};\n"
                    + ("        keepalive 32;\n" if keepalive else "") + "    }\n")
        location = ("            proxy_pass http://backend;\n"
                    "            proxy_http_version 1.1;\n"
                    '            proxy_set_header Connection "";\n'
                    "            proxy_set_header Host $host;\n")
    conf = folder / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # workers write temp files here
        + f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events { worker_connections 1024; }\n"
        # Bodies up to 128 KiB stay in memory: from a temporary file nginx sends them in
        # 8 KiB writes, and on a reused upstream connection (no TCP_NODELAY there) Nagle and
        # the backend's delayed ACK then hold each 64 KiB echo ~40 ms.
        f"http {{\n    access_log off;\n{temp}    client_max_body_size 0;\n"
        "    client_body_buffer_size 128k;\n"
        "    scgi_max_temp_file_size 0;\n    proxy_max_temp_file_size 0;\n"
        f"{upstream}    server {{\n        listen 127.0.0.1:{port};\n"
        f"        location / {{\n{location}        }}\n    }}\n}}\n")
    return conf


def run_wrk(port: int, work: Workload, seconds: float, folder: Path) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{work.connections}", f"-d{max(1, round(seconds))}s", "--latency",
            "--timeout", "30s"]
    if work.method == "POST":
        script = folder / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("e", {len(work.body)})\n'
                          'wrk.headers["Content-Type"] = "application/octet-stream"\n')
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}{work.path}"], capture_output=True,
                         text=True, timeout=seconds + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": float(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        result[f"p{pct}"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0)
    return result


def run_direct(loader: Path, backend: str, work: Workload, seconds: float,
               folder: Path) -> dict[str, float]:
    sys.path.insert(0, str(REPO / "src"))
    from scgikit.client import build_environ
    from scgikit.protocol import encode_request

    environ = build_environ(work.path, work.method)
    request = folder / f"{work.name}.scgi"
    request.write_bytes(encode_request(environ, len(work.body)) + work.body)
    target = backend if backend.startswith("unix:") else backend.rpartition(":")[2]
    out = subprocess.run([str(loader), "127.0.0.1", target, str(work.threads), str(seconds),
                          "10000000", str(request)], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout.split()
    done, errors, elapsed = int(out[0]), int(out[1]), float(out[2])
    return {"direct_rps": done / elapsed if elapsed else 0.0, "direct_errors": errors}


def check_answer(backend: str, work: Workload, name: str, over_http: bool = False) -> None:
    """One request straight to the server, over SCGI (or HTTP for an HTTP server)."""
    if over_http:
        status, body = http_request(backend, work.method, work.path, work.body, 60)
    else:
        sys.path.insert(0, str(REPO / "src"))
        from scgikit import client

        answer = client.request(backend, work.path, work.method, body=work.body,
                                timeout=60)
        status, body = answer.status, answer.body
    if status != 200 or len(body) != work.expect:
        raise RuntimeError(f"{name} answered {work.path} with {status} and "
                           f"{len(body)} bytes, expected 200 and {work.expect}")


@dataclass
class Row:
    server: str
    figures: dict[str, float] = field(default_factory=dict)
    # Each round's figures, in the order of the rounds, where there were several.
    rounds: list[dict[str, float]] = field(default_factory=list)


def ratio(base: Row, row: Row, key: str) -> float | None:
    """``base``'s figure over ``row``'s: the median of the rounds' own ratios where both
    rows have the same rounds, so that each round compares two servers measured minutes
    apart, and a slow spell of the machine during one round moves one ratio, not the
    median of one server's figures only; else the ratio of the two figures."""
    if len(base.rounds) > 1 and len(base.rounds) == len(row.rounds):
        ratios = [ours[key] / theirs[key] for ours, theirs in zip(base.rounds, row.rounds)
                  if ours.get(key) is not None and theirs.get(key)]
        if len(ratios) == len(base.rounds):
            return statistics.median(ratios)
    value, base_value = row.figures.get(key), base.figures.get(key)
    if not value or base_value is None:
        return None
    return base_value / value


def speaks_http(name: str) -> bool:
    """Whether nginx reaches ``name`` over HTTP (proxy_pass), not SCGI."""
    return name in HTTP_SERVERS or (lineup.known(name) and lineup.SERVERS[name].over_http)


def measure(name: str, python: Path, loader: Path, works: list[Workload], seconds: float,
            workers: int, transport: str = "tcp", direct: bool = True) -> dict[str, Row]:
    """Each of ``works`` on server ``name``, through nginx (and with ``direct``, for an SCGI
    server, straight to it with scgi-load)."""
    folder = Path(tempfile.mkdtemp(prefix="scgikit-bench-"))
    backend = (f"unix:{folder}/backend.sock" if transport == "unix"
               else f"127.0.0.1:{free_port()}")
    argv, cwd = server_argv(name, python, backend, workers)
    over_http = speaks_http(name)
    env = lineup.environment(name, folder) if lineup.known(name) else None
    proc = start(argv, cwd, env)
    nginx = None
    rows: dict[str, Row] = {}
    try:
        wait_backend(backend, proc, name, over_http=over_http)
        front = free_port()
        conf = nginx_config(folder, front, backend, over_http, keepalive=name != UVICORN_CLOSE)
        nginx = start(["nginx", "-p", str(folder), "-c", str(conf), "-g",
                       "daemon off; master_process on;"])
        wait_port(front, nginx, "nginx")
        for work in works:
            check_answer(backend, work, name, over_http)
            before, front_before = cpu_seconds(proc.pid), cpu_seconds(nginx.pid)
            figures = run_wrk(front, work, seconds, folder)
            used = cpu_seconds(proc.pid) - before
            front_used = cpu_seconds(nginx.pid) - front_before
            done = figures["requests"]
            figures["cpu_us"] = used / done * 1e6 if done else 0
            figures["nginx_us"] = front_used / done * 1e6 if done else 0
            if direct and not over_http:  # no SCGI load generator for an HTTP server: "-"
                figures.update(run_direct(loader, backend, work, seconds, folder))
            if work.name == "50mb":
                figures["peak_rss_mb"] = peak_rss(proc.pid) / (1 << 20)
            rows[work.name] = Row(name, figures)
            shown = f"{figures['direct_rps']:9.0f}" if "direct_rps" in figures else f"{'-':>9}"
            print(f"  {name:15} {transport:4} {work.name:14} {figures['rps']:9.0f} req/s  "
                  f"p50 {figures['p50']:6.2f} p99 {figures['p99']:6.2f} ms  "
                  f"{figures['cpu_us']:7.1f} us/req  nginx {figures['nginx_us']:5.1f} us/req  "
                  f"direct {shown} req/s  errors "
                  f"{figures['errors']}/{figures.get('direct_errors', '-')}", file=sys.stderr)
    finally:
        if nginx is not None:
            stop(nginx)
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return rows


# --- report ------------------------------------------------------------------------------------

Results = dict[tuple[str, str], dict[str, Row]]  # (transport, server) -> workload -> row


def medians(runs: list[Results]) -> Results:
    """Each figure's median over the rounds: one slow moment of a shared machine moves it less."""
    merged: Results = {}
    for key, rows in runs[0].items():
        merged[key] = {}
        for work, row in rows.items():
            taken = [run[key][work].figures for run in runs]
            merged[key][work] = Row(row.server, {
                figure: statistics.median(figures[figure] for figures in taken)
                for figure in row.figures}, taken if len(taken) > 1 else [])
    return merged


COLUMNS = [("rps", "req/s via nginx", "{:.0f}"), ("p50", "p50 ms", "{:.2f}"),
           ("p99", "p99 ms", "{:.2f}"), ("cpu_us", "CPU µs/req", "{:.1f}"),
           ("nginx_us", "nginx CPU µs/req", "{:.1f}"), ("direct_rps", "req/s direct", "{:.0f}")]


def table(work: Workload, rows: list[Row], bases: list[Row | None] | None = None,
          title: str = "", note: str = "", keys: tuple[str, ...] = ()) -> str:
    """One workload's rows; each row's ratios are against its base (default: the first row).
    ``keys``: the figures to show (default: every one of COLUMNS)."""
    ours = rows[0]
    if bases is None:
        bases = [None] + [ours] * (len(rows) - 1)
    columns = COLUMNS + ([("peak_rss_mb", "peak RSS MB", "{:.0f}")] if work.name == "50mb"
                         else [])
    if keys:
        columns = [column for column in columns if column[0] in keys]
    head = "| server | " + " | ".join(t for _, t, _ in columns) + " |"
    lines = [f"### {title}{work.name}: {work.method} {work.path}"
             + (f" with a {len(work.body)}-byte body" if work.body else ""), "", head,
             "|---" * (len(columns) + 1) + "|"]
    for row, base in zip(rows, bases):
        cells = []
        for key, _, fmt in columns:
            value = row.figures.get(key)
            text = fmt.format(value) if value is not None else "-"
            paired = ratio(base, row, key) if base is not None and value is not None else None
            if paired is not None:
                text += f" ({paired:.2f}×)"
            cells.append(text)
        lines.append(f"| {row.server} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(note or f"Ratios in brackets are {ours.server} / that server (for req/s "
                 "higher is better for scgikit; for latency and CPU, lower).")
    if len(ours.rounds) > 1:
        lines.append("")
        lines.append(f"Figures are medians over the {len(ours.rounds)} rounds; each ratio is "
                     "the median of the rounds' own ratios (each round measures the servers "
                     "one after the other).")
    return "\n".join(lines)


def beside(results: Results, transport: str, work: Workload,
           members: list[tuple[str, str]]) -> tuple[list[Row], list[Row | None]]:
    """The rows of ``work``, each of scgikit's (a member whose base is "") followed by the
    members compared with it, and the row each is compared with (None: scgikit's own)."""
    rows: list[Row] = []
    bases: list[Row | None] = []
    for ours, base in members:
        if base or (transport, ours) not in results or work.name not in results[transport, ours]:
            continue
        row = results[transport, ours][work.name]
        label = "scgikit (sync, WSGI)" if ours == "scgikit" else ours
        rows.append(Row(label, row.figures, row.rounds))
        bases.append(None)
        for name, kind in members:
            if kind == ours and work.name in results.get((transport, name), {}):
                rows.append(results[transport, name][work.name])
                bases.append(row)
    return rows, bases


def io_tables(results: Results, works: list[Workload]) -> str:
    """The I/O-bound workload's section: threaded WSGI and asyncio ASGI servers."""
    members = [(server.name, server.base) for server in lineup.IO_BOUND]
    parts = ["## I/O-bound: each request waits 10 ms (TCP)\n\n"
             "The app waits 10 ms (`time.sleep` in WSGI, `asyncio.sleep` in ASGI), as for a "
             "database or another service, then answers hello; wrk holds 64 (io-64) or 256 "
             f"(io-256) connections through nginx. Each worker process waits on many requests "
             f"at once: the WSGI servers with {lineup.THREADS} threads per worker "
             f"(scgikit `--worker threads --threads {lineup.THREADS}`, uWSGI `--threads` "
             f"behind `scgi_pass`; granian `--interface wsgi --blocking-threads "
             f"{lineup.THREADS}` and gunicorn gthread behind `proxy_pass`), the ASGI servers "
             "with an event loop on uvloop (scgikit asyncio behind `scgi_pass`; uvicorn, "
             "granian `--interface asgi` behind `proxy_pass`). At most 64 (or 256) requests "
             "wait at once, so 6,400 (or 25,600) requests/s is the ceiling; the CPU per "
             "request is what serving one costs beside the wait."]
    note = (f"Ratios in brackets are scgikit / that server, against scgikit's row of the same "
            f"kind: the WSGI servers against scgikit threads ×{lineup.THREADS}, the ASGI ones "
            "against scgikit asyncio (for req/s higher is better for scgikit; for latency and "
            "CPU, lower).")
    return tcp_tables(results, works, members, parts, note)


def tcp_tables(results: Results, works: list[Workload], members: list[tuple[str, str]],
               parts: list[str], note: str) -> str:
    """A TCP-only section: its heading and text (``parts``), then a table per workload."""
    for work in works:
        rows, bases = beside(results, "tcp", work, members)
        parts.append(table(work, rows, bases, "", note, ("rps", "p50", "p99", "cpu_us",
                                                         "nginx_us")))
    return "\n\n".join(parts)


def framework_tables(results: Results, works: list[Workload]) -> str:
    """The frameworks' section: Django and FastAPI on scgikit and the HTTP servers."""
    members = [(server.name, server.base) for server in lineup.FRAMEWORKS]
    parts = ["## Frameworks: Django and FastAPI (TCP)\n\n"
             "A Django view reading one row of a SQLite database through Django's connection "
             "(kept open: `CONN_MAX_AGE` None) and answering it as JSON (bench/django_app.py), "
             "and a FastAPI route answering a pydantic model as JSON (bench/fastapi_app.py), "
             "through nginx with 64 wrk connections. Django runs on scgikit's sync model, on "
             "gunicorn's sync workers, on granian `--interface wsgi` and on uvicorn through "
             "Django's own ASGI handler; FastAPI on scgikit's asyncio model (uvloop), uvicorn, "
             "granian `--interface asgi` and gunicorn with uvicorn's worker class. Same number "
             "of worker processes; the HTTP servers behind `proxy_pass` with `keepalive 32`."]
    note = ("Ratios in brackets are scgikit / that server (for req/s higher is better for "
            "scgikit; for latency and CPU, lower).")
    return tcp_tables(results, works, members, parts, note)


def http_tables(results: Results, works: list[Workload], transports: tuple[str, ...]) -> str:
    """The section on gunicorn, uvicorn and granian, each beside scgikit's model of its kind."""
    parts = ["## Against HTTP servers behind nginx (proxy_pass)\n\n"
             "gunicorn (sync, and gthread with 4 threads per worker), uvicorn (httptools, "
             "uvloop) and granian (Rust; `--interface wsgi` with its default threads, and "
             "`--interface asgi` on uvloop) behind nginx's `proxy_pass` to an upstream with "
             "`keepalive 32` (HTTP/1.1), "
             "each beside scgikit's model of its kind behind `scgi_pass`: the prefork sync "
             "workers (WSGI) and the asyncio workers on uvloop (ASGI); same apps, same number "
             "of worker processes. No SCGI load generator speaks to an HTTP server: their "
             "req/s direct is \"-\".\n\n"
             f"\"{UVICORN_CLOSE}\" is the same uvicorn behind an upstream without "
             "`keepalive` (nginx's default): nginx connects, the server accepts, and both "
             "close for every request, as with `scgi_pass`. Its difference from the uvicorn "
             "row is what the connection per request costs."]
    note = ("Ratios in brackets are scgikit / that server, against scgikit's row of the same "
            "kind: gunicorn and granian WSGI against scgikit (sync, WSGI), uvicorn and "
            "granian ASGI against scgikit asyncio "
            "(for req/s higher is better for scgikit; for latency and CPU, lower).")
    members = [("scgikit", ""), *((name, kind) for name, kind in HTTP_SERVERS.items()
                                  if kind == "scgikit"),
               (ASYNC, ""), *((name, kind) for name, kind in HTTP_SERVERS.items()
                              if kind == ASYNC)]
    for transport in transports:
        where = "TCP" if transport == "tcp" else "unix socket"
        for work in works:
            rows, bases = beside(results, transport, work, members)
            parts.append(table(work, rows, bases, f"{where}, ", note))
    return "\n\n".join(parts)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="1 s per measurement: proves the benchmark works (CI)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="duration of each measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure everything this many times, servers interleaved, and "
                             "report each figure's median (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--only", action="append", metavar="WORKLOAD",
                        help="run only these workloads: " + ", ".join(
                            w.name for w in WORKLOADS + IO_WORKLOADS + FRAMEWORK_WORKLOADS)
                        + "; or these sections: " + ", ".join(SECTION_NAMES))
    parser.add_argument("--servers", metavar="NAME,NAME",
                        help="compare scgikit with only these servers: " + ", ".join(SERVERS[1:]))
    parser.add_argument("--transport", choices=("tcp", "unix", "both"), default="both",
                        help="how the servers listen (default both, one after the other)")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the comparison of worker models")
    parser.add_argument("--http-peers", action=argparse.BooleanOptionalAction,
                        help="add gunicorn and uvicorn behind nginx's proxy_pass, on hello "
                             "and echo-64k (default: on, off with --smoke)")
    parser.add_argument("--io-bound", action=argparse.BooleanOptionalAction,
                        help="the I/O-bound workload (each request waits 10 ms) at 64 and 256 "
                             "connections, on threaded and asyncio servers (default: on; with "
                             "--smoke, 64 connections only; --only io-bound: this section alone)")
    parser.add_argument("--frameworks", action=argparse.BooleanOptionalAction,
                        help="Django and FastAPI on scgikit, gunicorn, uvicorn and granian "
                             "(default: on; --only frameworks: this section alone)")
    parser.add_argument("--stats", action="store_true",
                        help="add scgikit with --stats beside scgikit: the cost of the metrics")
    parser.add_argument("--write", action="store_true",
                        help="write bench/RESULTS.md, and draw docs/performance.svg from it")
    parser.add_argument("--venv", action="store_true",
                        help="always use bench/.venv, even if this Python has the peers")
    args = parser.parse_args(argv)
    every = {w.name for w in WORKLOADS + IO_WORKLOADS + FRAMEWORK_WORKLOADS} | set(SECTION_NAMES)
    if unknown_works := set(args.only or ()) - every:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown_works))}")
    servers = SERVERS
    if args.servers is not None:  # --servers "": scgikit alone
        chosen = {name.strip() for name in args.servers.split(",") if name.strip()}
        if unknown := chosen - set(SERVERS):
            parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
        servers = [name for name in SERVERS if name == "scgikit" or name in chosen]
    if args.stats:
        servers = [servers[0], STATS, *servers[1:]]
    seconds = 1.0 if args.smoke else args.seconds
    rounds = 1 if args.smoke else max(1, args.rounds)
    works = [w for w in WORKLOADS if not args.only or w.name in args.only]
    plain = [w for w in works if not w.servers]
    want_http = args.http_peers if args.http_peers is not None else not args.smoke
    http_works = [w for w in plain if w.name in MODEL_WORKLOADS] if want_http else []
    io_works = section(args, "io-bound", args.io_bound)
    if args.smoke and args.io_bound is None:
        io_works = io_works[:1]
    framework_works = section(args, "frameworks", args.frameworks)
    need_debian_tools()
    python = find_python(args, bool(http_works or io_works or framework_works),
                         bool(framework_works), args.write)
    loader = Path(tempfile.gettempdir()) / "scgikit-scgi-load"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(loader), str(HERE / "scgi-load.c")],
                   check=True)
    classic = [w for w in works if w.servers]
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    models = [w for w in plain if w.name in MODEL_WORKLOADS] if not args.no_models else []
    runs: list[Results] = []
    started = time.monotonic()
    try:
        for number in range(rounds):
            if rounds > 1:
                print(f"round {number + 1} of {rounds}", file=sys.stderr)
            results: Results = {}
            # Each round starts with another server: none is always the one measured
            # right after the previous round's last (and heaviest) runs.
            turn = number % len(servers)
            for transport in transports if plain else ():
                for name in servers[turn:] + servers[:turn]:
                    results[transport, name] = measure(name, python, loader, plain, seconds,
                                                       args.workers, transport)
            if classic:
                for name in CLASSIC_SERVERS:
                    rows = measure(name, python, loader, classic, seconds, args.workers)
                    results.setdefault(("tcp", name), {}).update(rows)
            for name in [*MODELS, *MODEL_PEERS.values()] if models else ():
                if ("tcp", name) not in results:
                    results["tcp", name] = measure(name, python, loader, models, seconds,
                                                   args.workers)
            for transport in transports if http_works else ():
                for name in (ASYNC, *HTTP_SERVERS):
                    if (transport, name) not in results:
                        results[transport, name] = measure(name, python, loader, http_works,
                                                           seconds, args.workers, transport)
            for server in lineup.IO_BOUND if io_works else ():
                results.setdefault(("tcp", server.name), {}).update(measure(
                    server.name, python, loader, io_works, seconds, args.workers, direct=False))
            for server in lineup.FRAMEWORKS:
                mine = [w for w in framework_works if server.name in w.servers]
                if mine:
                    results.setdefault(("tcp", server.name), {}).update(measure(
                        server.name, python, loader, mine, seconds, args.workers, direct=False))
            runs.append(results)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    results = medians(runs)
    sections = []
    for transport in transports if works else ():
        sections.append(f"## Over {'TCP (127.0.0.1)' if transport == 'tcp' else 'a unix socket'}")
        for work in works:
            if work.servers and transport != "tcp":
                continue
            names = list(work.servers or servers)
            sections.append(table(work, [results[transport, n][work.name] for n in names]))
    if models:
        sections.append("## Worker models (TCP)\n\nscgikit's prefork sync workers against "
                        "its threads and asyncio models, each followed by the peer of its "
                        "kind (flup's threaded server; aioscgi on the same ASGI app), with "
                        "the same number of processes (aioscgi and flup threads: 1).")
        for work in models:
            ours = results["tcp", "scgikit"][work.name]
            rows = [Row("scgikit prefork, WSGI", ours.figures, ours.rounds)]
            for name in MODELS:
                rows.append(results["tcp", name][work.name])
                if name in MODEL_PEERS:
                    rows.append(results["tcp", MODEL_PEERS[name]][work.name])
            sections.append(table(work, rows))
    if http_works:
        sections.append(http_tables(results, http_works, transports))
    if io_works:
        sections.append(io_tables(results, io_works))
    if framework_works:
        sections.append(framework_tables(results, framework_works))
    command = "bench/run " + shlex.join(argv if argv is not None else sys.argv[1:])
    median = f"each figure the median of {rounds} rounds; " if rounds > 1 else ""
    report = (f"Run on {datetime.date.today()}, {machine()}; {args.workers} worker processes "
              f"each (aioscgi and flup threads: 1 process; scgi 2.2 on a unix socket: its "
              f"listening socket made AF_UNIX by bench/servers.py); {seconds:g} s per measurement; "
              f"{median}"
              f"nginx 1 worker, wrk -t1; took {time.monotonic() - started:.0f} s.\n"
              f"Command: `{command.strip()}`\n\n" + "\n\n".join(sections) + "\n")
    print(report)
    if args.write:
        kept = kept_sections(HERE / "RESULTS.md")
        (HERE / "RESULTS.md").write_text("# Benchmark results\n\n" + report + kept)
        subprocess.run([str(python), str(HERE / "chart.py")], check=True)
    return 0


# Sections of RESULTS.md that other scripts write (bench/footprint.py --write): kept as they
# are when bench/run --write replaces the rest.
OTHERS_SECTIONS = ("## Footprint and start-up",)


def kept_sections(path: Path) -> str:
    """The sections of ``path`` that bench/run does not write, each whole, to go after its own."""
    if not path.exists():
        return ""
    text, kept = path.read_text(), []
    for heading in OTHERS_SECTIONS:
        if heading in text:
            part = heading + text.split(heading, 1)[1].split("\n## ", 1)[0]
            kept.append("\n" + part.rstrip("\n") + "\n")
    return "".join(kept)


def section(args: argparse.Namespace, name: str, wanted: bool | None) -> list[Workload]:
    """The workloads of section ``name`` ("io-bound", "frameworks") this run measures: all
    of them unless --only names others, or none with --no-SECTION."""
    if wanted is False:
        return []
    works = SECTION_NAMES[name]
    if not args.only or name in args.only or wanted:
        chosen = [w for w in works if w.name in args.only] if args.only else []
        return chosen or works
    return [w for w in works if w.name in args.only]


if __name__ == "__main__":
    sys.exit(main())
