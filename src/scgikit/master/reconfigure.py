"""SIGHUP with ``--config FILE``: the master reads the file again, and the new generation of
workers, and the master itself, run with what it says now.

The new ``Config`` is built as the first was (``Origin``): from the same command line,
the same environment (a copy taken at start: what the master or the app set in its
``os.environ`` since is not read) and the file read afresh, with the same precedence,
so a flag or a ``SCGIKIT_*`` variable still wins over the file.  A relative file name
is read from the folder the server was started in, as at start, whatever ``--chdir``.

Then, for each setting that changed:

- A setting the master built something from at start, once (the listening sockets
  and their files, the user and group, ``--chdir``, the pid file, the access log's
  file, the ``--http`` gateway, the ``--stats`` listener, ``--preload``, ``--reload``'s
  watcher, the ``--session-affinity`` router): its field says ``restart`` in the
  table of ``config.py``.  It is logged, one line each, and the value in force stays.
  So do, with ``--preload``, the app (``app``) and ``--interface``, as the master
  loaded the app at start and forks its workers with it; and, with
  ``--session-affinity``, ``--allow-from``, which the master's router checks.
- Any other takes effect (``apply``): the new workers get the new ``Config``, and so do
  the master's own decisions (``--workers``, ``--timeout``, ``--graceful-timeout``,
  ``--boot-timeout``, the recycling limits), ``--env`` (set in the master's
  environment, which the new workers inherit; a variable no longer given gets its
  value from start back), the levels and formats of the logs, and ``--header-timeout``
  on the listening sockets.

A file that cannot be read, is not valid TOML, or holds a value ``Config`` refuses
changes nothing: one error line names the file and the problem, in the words of
``scgikit check``, and the reload goes on with the settings in force.  A server
started without ``--config`` (or ``SCGIServer``, which has none) reloads as ever.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..arguments import one_line
from ..config import Config, ConfigError, flag, option_fields
from ..option_kinds import octal
from ..options import from_arguments
from .listeners import Listener, set_timeouts
from .logs import restyle_logging
from .roster import MasterState

__all__ = ["Origin", "Reread", "apply", "reconfigure", "reread"]

log = logging.getLogger("scgikit")

@dataclass(frozen=True)
class Origin:
    """What ``scgikit serve`` builds its ``Config`` from: its command line (with TARGET),
    the environment as it was at start, and the folder it was started in."""

    arguments: argparse.Namespace
    environ: Mapping[str, str]
    folder: str = dataclasses.field(default_factory=os.getcwd)

    def config(self) -> Config:
        """The ``Config``: options, ``SCGIKIT_*`` variables, the ``--config`` file, an app."""
        with _in_folder(self.folder):
            config = from_arguments(self.arguments, self.environ,
                                    target=getattr(self.arguments, "target", None))
        if not config.target:
            raise ConfigError("no app to serve: give TARGET, or app = \"module:app\" in the "
                              "--config file")
        return config


@contextlib.contextmanager
def _in_folder(folder: str) -> Iterator[None]:
    """In ``folder`` for a moment (the master has entered --chdir since it read the file)."""
    here = os.getcwd()
    if here == folder:
        yield
        return
    try:
        os.chdir(folder)
    except OSError as exc:
        raise ConfigError(f"cannot go back to the folder the server was started in, "
                          f"{folder}, to read the file: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        os.chdir(here)


@dataclass(frozen=True)
class Reread:
    """What a HUP made of the file: the ``Config`` to run with, and the lines to log."""

    config: Config
    lines: list[tuple[int, str]]  # (logging level, message)


def reread(old: Config, origin: Origin) -> Reread:
    """The ``Config`` a HUP runs with: ``origin`` built again with the file as it is now,
    less what takes a restart; ``old`` itself when the new one cannot be built."""
    path = old.config_file or ""
    try:
        new = origin.config()
    except ConfigError as exc:
        return Reread(old, [(logging.ERROR, _kept_all(path, one_line(str(exc))))])
    except Exception as exc:  # a HUP never stops the master
        return Reread(old, [(logging.ERROR, _kept_all(path, f"{type(exc).__name__}: {exc}"))])
    kept = {name: why for name in _names() if getattr(new, name) != getattr(old, name)
            and (why := restart_reason(name, old)) is not None}
    lines = [(logging.WARNING, f"Reload: {_flag(name)} changed in {path}: takes a restart"
                               f"{why}; keeping {shown(name, getattr(old, name))}")
             for name, why in kept.items()]
    if kept:
        sources = {k: v for k, v in new.sources.items() if k not in kept}
        sources |= {k: v for k, v in old.sources.items() if k in kept}
        try:
            new = dataclasses.replace(new, sources=sources,
                                      **{name: getattr(old, name) for name in kept})
        except ConfigError as exc:  # a value that goes only with one kept: none of it
            return Reread(old, lines + [(logging.ERROR, _kept_all(path, one_line(str(exc))))])
    changed = [f"{_flag(name)} {shown(name, getattr(new, name))} (was "
               f"{shown(name, getattr(old, name))})"
               for name in _names() if getattr(new, name) != getattr(old, name)]
    lines.append((logging.INFO, f"Reload: read {path}: "
                                + ("; ".join(changed) if changed else "no setting changed")))
    return Reread(new, lines)


def _kept_all(path: str, message: str) -> str:
    named = message if path in message else f"{path}: {message}"
    return f"Reload: keeping the settings in force: {named}"


def restart_reason(name: str, config: Config) -> str | None:
    """Why a change of field ``name`` waits for a restart of a server running with
    ``config`` ("" when it always does), or None when a HUP applies it."""
    if name == "target":  # the file's app
        return " (--preload: the master loaded the app at start)" if config.preload else None
    restart = next(f.metadata["restart"] for f in option_fields() if f.name == name)
    if restart is True:
        return ""
    if restart and getattr(config, restart):
        return f" (with {flag(restart)})"
    return None


def _names() -> list[str]:
    """The fields a file can change: its ``app`` and every option it has a key for."""
    return ["target"] + [f.name for f in option_fields() if f.metadata["in_file"]]


def _flag(name: str) -> str:
    return "app" if name == "target" else flag(name)


def shown(name: str, value: Any) -> str:
    """A field's value as the operator writes it (its default's words when it has none)."""
    meta = next((f.metadata for f in option_fields() if f.name == name), None)
    if meta is not None and value in (None, ()):
        return str(meta["shown"])
    if isinstance(value, bool):
        return "on" if value else "off"
    if meta is not None and meta["parse"] is octal:
        return f"0{value:o}"
    if isinstance(value, tuple):  # of --env pairs, the names only: values may be secrets
        return " ".join(item[0] if isinstance(item, tuple) else str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and (" " in value or not value):
        return json.dumps(value)
    return str(value)


def apply(old: Config, new: Config, state: MasterState, listeners: Sequence[Listener],
          environ: Mapping[str, str]) -> None:
    """What the master holds from ``old`` made to follow ``new``: the number of workers
    (kept when the file's did not change, with what TTIN and TTOU made of it), --env in
    its environment (``environ``: as it was at start), the logs, the listeners' timeouts.
    The rest the master reads from its ``Config`` as it needs it."""
    if new.workers != old.workers:
        state.wanted = new.workers
    given = dict(new.env)
    for name, _ in old.env:
        if name not in given:
            if name in environ:
                os.environ[name] = environ[name]
            else:
                os.environ.pop(name, None)
    os.environ.update(given)
    restyle_logging(new)
    if new.header_timeout != old.header_timeout:
        for listener in listeners:
            set_timeouts(listener.sock, new)


def reconfigure(old: Config, origin: Origin, state: MasterState,
                listeners: Sequence[Listener]) -> Config:
    """A HUP's reading of the file: logged, applied, and the ``Config`` to run with."""
    result = reread(old, origin)
    for level, line in result.lines:
        log.log(level, "%s", line)
    if result.config is not old:
        apply(old, result.config, state, listeners, origin.environ)
    return result.config
