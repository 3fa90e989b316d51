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
from typing import Any

from ..apps.loader import AppImportError
from ..config import Config, ConfigError
from ..workers import import_models, make_worker
from ..workers.base import Heartbeat
from .listeners import Listener
from .preload import exit_text
from .roster import APP_LOAD_ERROR, WORKER_BOOT_ERROR

log = logging.getLogger("scgikit")


def boot(config: Config, listeners: Sequence[Listener], app: Any, heartbeat: Heartbeat,
         ready_fd: int, ppid: int) -> int:
    """In the child after the fork: drop privileges, load the app, serve; returns the exit code."""
    try:
        _drop_privileges(config)
    except OSError as exc:
        log.error("Cannot switch to user/group: %s", exc)
        return WORKER_BOOT_ERROR
    try:
        worker = make_worker(config, [listener.sock for listener in listeners], app,
                             heartbeat, ppid)
        worker.start()
    except AppImportError as exc:
        log.error("Cannot load the app: %s", exc)
        return APP_LOAD_ERROR
    except SystemExit as exc:
        # An app refusing to start (sys.exit("DATABASE_URL not set")): its message is the cause.
        log.error("Cannot load the app %s: it exited: %s", _name(config, app), exit_text(exc))
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


def prepare_process(config: Config) -> None:
    """What the master does before it forks, and ``scgikit check`` before it loads the
    app: --env, --chdir, and the folder on sys.path, as 'python -m' would have it for
    'module:app'; and the modules the workers run on (``import_models``).  Raises
    ``ConfigError`` for a --chdir that cannot be entered."""
    for name, value in config.env:
        os.environ[name] = value
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {config.chdir}: {exc.strerror}") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    import_models(config)


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
