"""The settings against this machine: what ``serve`` checks before it binds or writes
anything, and ``scgikit check`` reports in full.

``Config`` has checked each value and how they go together; what is left needs
the machine: users and groups that exist, root where it is needed, folders that
exist and files that can be written (the pid file, the access log, each unix
socket's folder), a ``--chdir`` that is a folder, ``fd://N`` that is a listening
socket.  ``problems`` lists them all; ``ensure_startable`` raises the first, so
``serve`` stops before it has made a socket file or a pid file, and ``check``
fails exactly where ``serve`` would.

What depends on the moment is left to the start itself and is a warning of
``check`` only: a port some other server listens on now, a privileged port (a
capability may allow it), a unix socket some server holds.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from ..addresses import parse_address
from ..config import Config, ConfigError
from .listeners import listening_problem, socket_owner

__all__ = ["ensure_startable", "problems"]


def ensure_startable(config: Config) -> None:
    """Raise the first ``ConfigError`` of ``problems``, if any."""
    found = problems(config)
    if found:
        raise found[0]


def problems(config: Config) -> list[ConfigError]:
    """Every reason ``serve`` would not start with ``config`` on this machine, in the
    order it would meet them, each naming where its value came from."""
    return [config.blame(error) for error in _problems(config)]


def _problems(config: Config) -> list[ConfigError]:
    found: list[ConfigError] = []
    if (config.user or config.group) and os.geteuid() != 0:
        found.append(ConfigError("--user/--group need the server to be started as root"))
    try:
        socket_owner(config)
    except ConfigError as exc:
        found.append(exc)
    folder = _chdir(config, found)
    for name in ("pid_file", "access_log"):
        path = getattr(config, name)
        if path is not None and path != "-":
            # The access log is opened before the master enters --chdir; the pid file after.
            error = _writable_file(_under(folder if name == "pid_file" else None, path))
            if error:
                found.append(ConfigError(f"{path}: {error}", name))
    for name, texts in (("bind", config.bind), ("stats", (config.stats,) if config.stats else ())):
        for text in texts:
            error = _address_problem(text, folder)
            if error:
                found.append(ConfigError(f"{text}: {error}", name))
    if config.reload:
        for path in config.reload_dir:
            if not os.path.isdir(_under(folder, path)):
                found.append(ConfigError(f"{path}: no such folder", "reload_dir"))
    return found


def _chdir(config: Config, found: list[ConfigError]) -> str | None:
    """The folder relative paths will be taken from (None: this one), after --chdir."""
    if config.chdir is None:
        return None
    if not os.path.isdir(config.chdir):
        found.append(ConfigError(f"{config.chdir}: no such folder", "chdir"))
        return None
    if not os.access(config.chdir, os.X_OK):
        found.append(ConfigError(f"{config.chdir}: this user cannot enter it", "chdir"))
    return config.chdir


def _under(folder: str | None, path: str) -> str:
    return os.path.join(folder, path) if folder and not os.path.isabs(path) else path


def _writable_file(path: str) -> str | None:
    """Why ``path`` cannot be opened for writing, or None."""
    if os.path.isdir(path):
        return "is a folder, not a file"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "this user cannot write it"
    return _creatable(path)


def _creatable(path: str) -> str | None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"the folder {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"this user cannot create files in {parent}"
    return None


def _address_problem(text: str, folder: str | None) -> str | None:
    address = parse_address(text)  # Config has parsed it
    if address.fd is not None:
        return _fd_problem(address.fd)
    if address.path is None:
        return None
    path = _under(folder, address.path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return _creatable(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISSOCK(mode):
        return "exists and is not a socket; not replacing it"
    return None


def _fd_problem(fd: int) -> str | None:
    """Why descriptor ``fd`` is not a listening stream socket, looked at through a copy."""
    try:
        copy = os.dup(fd)
    except OSError as exc:
        return f"not an open socket: {exc.strerror or exc}"
    try:
        sock = socket.socket(fileno=copy)
    except OSError as exc:
        os.close(copy)
        return "not a socket" if exc.errno == errno.ENOTSOCK else \
            f"not an open socket: {exc.strerror or exc}"
    with sock:
        return listening_problem(sock)
