"""The servers of bench/run's later sections, and how each starts.

- granian (a Rust HTTP server), WSGI and ASGI, beside gunicorn and uvicorn behind nginx's
  proxy_pass;
- the I/O-bound workload (/sleep: 10 ms of waiting, then hello): servers with enough
  threads, or an event loop, to wait on many requests at once;
- the frameworks: a Django view reading one row of SQLite, a FastAPI JSON route, each on
  scgikit and on the HTTP servers users run them with.

Each server is a ``Server``: its command line, whether nginx reaches it over HTTP
(proxy_pass) or SCGI (scgi_pass), and the scgikit row its ratios are taken against.  Nothing
here imports run.py: run.py asks this module how to start a name it does not know.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THREADS = 128  # per worker process, for the I/O-bound workload's threaded servers
SQLITE_ROWS = 100


@dataclass(frozen=True)
class Server:
    name: str
    argv: tuple[str, ...]   # after the program; {py}, {workers}, {where} filled in by argv()
    program: str            # "scgikit", "uwsgi", "gunicorn", "uvicorn" or "granian"
    over_http: bool
    base: str = ""          # the scgikit row it is compared with ("": it is that row)
    sqlite: bool = False    # needs the Django app's database (BENCH_SQLITE)


def _scgikit(name: str, target: str, *options: str, base: str = "") -> Server:
    return Server(name, (target, *options), "scgikit", False, base)


def _granian(name: str, interface: str, target: str, *options: str, base: str,
             sqlite: bool = False) -> Server:
    loop = ("--loop", "uvloop") if interface == "asgi" else ()
    return Server(name, ("--interface", interface, *loop, *options, target), "granian", True,
                  base, sqlite)


def _gunicorn(name: str, target: str, *options: str, base: str, sqlite: bool = False) -> Server:
    return Server(name, (*options, target), "gunicorn", True, base, sqlite)


def _uvicorn(name: str, target: str, base: str, sqlite: bool = False) -> Server:
    return Server(name, (target,), "uvicorn", True, base, sqlite)


# The names bench/run.py already starts: scgikit's asyncio model on uvloop, and uvicorn.
ASYNC = "scgikit asyncio, ASGI (uvloop)"
UVICORN = "uvicorn"
SYNC = "scgikit"

#: granian in the HTTP servers' section (hello, echo-64k), with its default threads.
GRANIAN = [
    _granian("granian WSGI", "wsgi", "apps:app", base=SYNC),
    _granian("granian ASGI", "asgi", "apps:asgi_app", base=ASYNC),
]

T = str(THREADS)
#: The I/O-bound workload's servers: WSGI ones with THREADS threads per worker against
#: scgikit's threads model, ASGI ones against its asyncio model.
IO_BOUND = [
    _scgikit(f"scgikit threads ×{T}", "bench/apps.py:app", "--worker", "threads", "--threads", T),
    Server(f"uWSGI threads ×{T}", ("--threads", T), "uwsgi", False, f"scgikit threads ×{T}"),
    _granian(f"granian WSGI ×{T}", "wsgi", "apps:app", "--blocking-threads", T,
             base=f"scgikit threads ×{T}"),
    _gunicorn(f"gunicorn gthread ×{T}", "apps:app", "--worker-class", "gthread", "--threads", T,
              base=f"scgikit threads ×{T}"),
    _scgikit(ASYNC, "bench/apps.py:asgi_app", "--loop", "uvloop"),
    _uvicorn(UVICORN, "apps:asgi_app", base=ASYNC),
    GRANIAN[1],
]

DJANGO, FASTAPI = "scgikit sync, Django", "scgikit asyncio, FastAPI"
#: The frameworks: Django on scgikit's sync model, FastAPI on its asyncio model, each
#: against the HTTP servers users run them with.
FRAMEWORKS = [
    Server(DJANGO, ("bench/django_app.py:application", "--worker", "sync"), "scgikit", False,
           sqlite=True),
    _gunicorn("gunicorn sync, Django", "django_app:application", "--worker-class", "sync",
              base=DJANGO, sqlite=True),
    _uvicorn("uvicorn, Django (its ASGI handler)", "django_app:asgi", base=DJANGO, sqlite=True),
    _granian("granian WSGI, Django", "wsgi", "django_app:application", base=DJANGO,
             sqlite=True),
    _scgikit(FASTAPI, "bench/fastapi_app.py:app", "--loop", "uvloop"),
    _uvicorn("uvicorn, FastAPI", "fastapi_app:app", base=FASTAPI),
    _granian("granian ASGI, FastAPI", "asgi", "fastapi_app:app", base=FASTAPI),
    _gunicorn("gunicorn + uvicorn workers, FastAPI", "fastapi_app:app", "--worker-class",
              "uvicorn.workers.UvicornWorker", base=FASTAPI),
]

SERVERS = {server.name: server for server in [*GRANIAN, *IO_BOUND, *FRAMEWORKS]}


def known(name: str) -> bool:
    return name in SERVERS


def argv(name: str, python: Path, uwsgi: str, backend: str,
         workers: int) -> tuple[list[str], Path]:
    """The command line of ``name`` listening on ``backend`` ("127.0.0.1:PORT" or
    "unix:PATH"), and the folder to start it in."""
    server = SERVERS[name]
    py, count, unix = str(python), str(workers), backend.startswith("unix:")
    port = backend.rpartition(":")[2]
    options = list(server.argv)
    if server.program == "scgikit":
        return [py, "-m", "scgikit", "serve", options[0], "--workers", count, "--bind", backend,
                "--log-level", "warning", *options[1:]], REPO
    if server.program == "uwsgi":
        # --listen: uWSGI's listen queue is 100 by default, fewer than the connections nginx
        # opens at once for 256 clients (scgikit's is 2048).
        return [uwsgi, "--scgi-socket", backend[5:] if unix else backend, "--wsgi-file",
                str(HERE / "apps.py"), "--callable", "app", "--master", "--processes", count,
                "--disable-logging", "--die-on-term", "--buffer-size", "65535", "--listen",
                "1024", *options], HERE
    if server.program == "gunicorn":
        return [py, "-m", "gunicorn", "--workers", count, "--bind", backend, "--log-level",
                "warning", *options], HERE
    if server.program == "uvicorn":
        where = ["--uds", backend[5:]] if unix else ["--host", "127.0.0.1", "--port", port]
        return [py, "-m", "uvicorn", "--workers", count, "--http", "httptools", "--loop",
                "uvloop", "--log-level", "warning", "--no-access-log", *where, *options], HERE
    where = ["--uds", backend[5:]] if unix else ["--host", "127.0.0.1", "--port", port]
    return [py, "-m", "granian", "--workers", count, *where, "--log-level", "warning",
            "--no-ws", *options], HERE


def environment(name: str, folder: Path) -> dict[str, str]:
    """What ``name`` needs in its environment, made in ``folder``: the Django app's
    database for a Django server (nothing for the others)."""
    if not SERVERS[name].sqlite:
        return {}
    file = folder / "bench.sqlite3"
    make_database(file)
    return {"BENCH_SQLITE": str(file)}


def make_database(file: Path) -> None:
    """The table bench/django_app.py's view reads: SQLITE_ROWS greetings."""
    with sqlite3.connect(file) as db:
        db.execute("CREATE TABLE IF NOT EXISTS greeting (id INTEGER PRIMARY KEY, "
                   "text TEXT NOT NULL)")
        db.executemany("INSERT OR REPLACE INTO greeting VALUES (?, ?)",
                       [(n, f"Hello, world number {n:03}!") for n in range(1, SQLITE_ROWS + 1)])
    db.close()
