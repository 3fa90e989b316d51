"""A worker's start: drop privileges, load the app, build its adapter, say "ready", serve.

Everything here runs in the child right after the fork.  Whatever goes wrong
before the worker says it is ready is a boot failure, reported to the master
by exit code (as gunicorn's: 3 the worker itself could not start, 4 the app
could not be loaded, which includes an app calling ``sys.exit`` as it loads).
A worker that dies any other way before it is ready (a signal, ``os.abort()``,
killed after ``--boot-timeout``) is a boot failure to the master too; the
master decides what it means (stop on first start, keep the old workers on a
reload, back off otherwise).
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from ..config import Config, ConfigError
from .sockets import Listener
from .worker import Adapter, Heartbeat, Worker

log = logging.getLogger("scgikit")

# Exit codes the master understands (as gunicorn's).
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4


def boot(config: Config, listeners: Sequence[Listener], app: Any, heartbeat: Heartbeat,
         ready_fd: int, ppid: int) -> int:
    """In the child after the fork: drop privileges, load the app, serve; returns the exit code."""
    from ..apps.loader import AppImportError

    try:
        _drop_privileges(config)
    except OSError as exc:
        log.error("Cannot switch to user/group: %s", exc)
        return WORKER_BOOT_ERROR
    try:
        worker = make_worker(config, listeners, app, heartbeat, ppid)
        worker.start()
    except AppImportError as exc:
        log.error("Cannot load the app: %s", exc)
        return APP_LOAD_ERROR
    except SystemExit as exc:
        # An app refusing to start (sys.exit("DATABASE_URL not set")): its message is the cause.
        log.error("Cannot load the app %s: it exited: %s", _name(config, app), _exit_text(exc))
        return APP_LOAD_ERROR
    except KeyboardInterrupt:
        raise
    except BaseException:
        log.exception("Cannot load the app %s", _name(config, app))
        return APP_LOAD_ERROR
    os.write(ready_fd, struct.pack("i", os.getpid()))
    os.close(ready_fd)
    worker.run()
    sys.stdout.flush()
    return worker.exit_code


def _name(config: Config, app: Any) -> str:
    return repr(config.target) if config.target else repr(app)


def _exit_text(exc: SystemExit) -> str:
    if exc.code is None or isinstance(exc.code, int):
        return f"sys.exit({'' if exc.code is None else exc.code})"
    return str(exc.code)


class WorkerModel(Protocol):
    """What boot needs of a worker model (sync, threads, asyncio)."""

    exit_code: int

    def start(self) -> None:
        """Get ready to serve (the asyncio model runs the ASGI lifespan startup here).

        Raises AppImportError (or any exception) when the app cannot serve.
        """

    def run(self) -> None:
        """Serve until stopped."""


def prepare_process(config: Config) -> None:
    """What the master does before it forks, and ``scgikit check`` before it loads the
    app: --env, --chdir, and the folder on sys.path, as 'python -m' would have it for
    'module:app'.  Raises ``ConfigError`` for a --chdir that cannot be entered."""
    for name, value in config.env:
        os.environ[name] = value
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {config.chdir}: {exc.strerror}") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def choose_model(config: Config, kind: str) -> str:
    """The worker model for an app of ``kind``: --worker, or the one the app needs."""
    from ..apps.loader import AppImportError

    model = config.worker or (
        "asyncio" if kind == "asgi" else "threads" if config.threads > 1 else "sync")
    if kind == "asgi" and model != "asyncio":
        raise AppImportError(f"an ASGI app needs --worker asyncio, not --worker {model}")
    if kind != "asgi" and model == "asyncio":
        raise AppImportError(f"--worker asyncio serves ASGI apps; this is a {kind} app")
    if kind == "handler" and model == "threads":
        raise AppImportError(
            "a classic SCGIHandler swaps the process-wide stdin, stdout and os.environ "
            "(produce_cgilike), so it runs on the sync model only: drop --threads/--worker")
    return model


def make_worker(config: Config, listeners: Sequence[Listener], app: Any, heartbeat: Heartbeat,
                ppid: int) -> WorkerModel:
    from ..apps.loader import app_kind, load_target

    if app is None:
        app = load_target(config.target)
    kind = app_kind(app)
    model = choose_model(config, kind)
    if model == "asyncio":
        from .aio import AsyncioWorker

        return AsyncioWorker(config, listeners, app, heartbeat, ppid)
    adapter = make_adapter(kind, app, config, listeners, multithread=model == "threads")
    if model == "threads":
        from .threaded import ThreadedWorker

        return ThreadedWorker(config, listeners, adapter, heartbeat, ppid)
    return Worker(config, listeners, adapter, heartbeat, ppid)


def make_adapter(kind: str, app: Any, config: Config, listeners: Sequence[Listener],
                 multithread: bool = False) -> Adapter:
    if kind == "handler":
        from ..apps.handler import HandlerAdapter

        return HandlerAdapter(app, config.header_timeout or None)
    from ..apps.wsgi import WSGIAdapter

    name, port = server_name(listeners)
    return WSGIAdapter(app, config.script_name, name, port, config.header_timeout or None,
                       multithread=multithread)


def server_name(listeners: Sequence[Listener]) -> tuple[str, str]:
    """SERVER_NAME/SERVER_PORT defaults for front ends that do not send them."""
    for listener in listeners:
        local = listener.sock.getsockname()
        if isinstance(local, tuple):
            return str(local[0]), str(local[1])
    return "localhost", "80"


def _drop_privileges(config: Config) -> None:
    if config.group is not None:
        import grp

        os.setgid(grp.getgrnam(config.group).gr_gid)
    if config.user is not None:
        import pwd

        entry = pwd.getpwnam(config.user)
        if config.group is None:
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
