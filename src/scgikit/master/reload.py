"""``--reload``: watch the app's files by polling, so that the master reloads the workers.

How it works.  The master never imports the app, so it cannot ask Python which
modules the app uses: it watches files instead.  Each scan walks the watched
folders with ``os.scandir`` and stats every file whose name (for a glob with a
``/``, whose path under the folder) matches an include glob and no exclude glob,
keeping its modification time, size and inode.  A file that appears, disappears
or whose stamp differs is a change; the inode catches editors that save by
writing a new file and renaming it over the old one.

A burst of saves (an editor writing several files, a ``git checkout``) gives
one reload: changes are gathered until a scan finds nothing new, and only then
handed to the master, which reloads as on SIGHUP.  While changes are pending
the scans come every ``SETTLE`` seconds, so a reload follows a save by up to
``INTERVAL + SETTLE``.

The cost is one ``stat`` per watched file per scan.  The next scan waits at
least ``INTERVAL``, and at least ``1 / MAX_SHARE`` times as long as the last
scan took, so however big the tree, watching never takes the master more than
about ``MAX_SHARE`` of a core: a huge tree only makes reloads slower.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from fnmatch import translate

from ..config import Config, ConfigError

__all__ = ["DEFAULT_EXCLUDE", "DEFAULT_INCLUDE", "Filter", "Watcher", "describe",
           "next_scan_after", "scan", "watched_folders", "watcher_for"]

DEFAULT_INCLUDE = ("*.py",)
# Hidden folders and files (.git, .venv, .mypy_cache, editors' .swp files), the bytecode
# cache; a folder holding pyvenv.cfg (a virtual environment of any name) is skipped too.
DEFAULT_EXCLUDE = (".*", "__pycache__", "*.pyc")
VENV_MARKER = "pyvenv.cfg"
INTERVAL = 0.5
SETTLE = 0.25
MAX_SHARE = 0.05

Stamp = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


class Filter:
    """Which files are watched: globs on a name, or, for a glob with a ``/``, on the path
    under the watched folder.  Each list is one compiled regular expression per kind, as
    a scan matches every name in the tree."""

    def __init__(self, include: Sequence[str] = DEFAULT_INCLUDE,
                 exclude: Sequence[str] = DEFAULT_EXCLUDE) -> None:
        self.include = _Globs(include)
        self.exclude = _Globs(exclude)

    def skips(self, name: str, relative: str) -> bool:
        return self.exclude.match(name, relative)

    def watches(self, name: str, relative: str) -> bool:
        return self.include.match(name, relative)


class _Globs:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.names = _compile(p for p in patterns if "/" not in p)
        self.paths = _compile(p for p in patterns if "/" in p)

    def match(self, name: str, relative: str) -> bool:
        return bool(self.names and self.names.match(name)
                    or self.paths and self.paths.match(relative))


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    expressions = [translate(p) for p in patterns]
    return re.compile("|".join(expressions)) if expressions else None


def scan(folders: Sequence[str], rules: Filter) -> dict[str, Stamp]:
    """Every watched file under ``folders`` with its stamp.

    Symbolic links to folders are not followed (no loops); a folder or file that
    vanishes or cannot be read while we look is simply not there.
    """
    found: dict[str, Stamp] = {}
    stack = [(folder, "") for folder in folders]
    while stack:
        folder, relative = stack.pop()
        entries = _entries(folder)
        if relative and any(entry.name == VENV_MARKER for entry in entries):
            continue
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            if rules.skips(entry.name, path):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, path))
                elif rules.watches(entry.name, path):
                    st = entry.stat()
                    found[entry.path] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                continue
    return found


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def next_scan_after(took: float, interval: float = INTERVAL) -> float:
    """Seconds from the end of a scan that took ``took`` seconds to the next one."""
    return max(interval, took / MAX_SHARE)


class Watcher:
    """Polls ``folders``; ``poll`` returns the changed files once a burst of changes is over."""

    def __init__(self, folders: Sequence[str], rules: Filter, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folders = list(folders)
        self.rules = rules
        self.interval = interval
        self.clock = clock
        self.files = scan(self.folders, rules)
        self.pending: set[str] = set()
        self.due = clock() + interval

    def __str__(self) -> str:
        count = len(self.files)
        return f"watching {count} file{'' if count == 1 else 's'} in {', '.join(self.folders)}"

    def seconds_left(self) -> float:
        return max(0.0, self.due - self.clock())

    def poll(self) -> list[str]:
        """Scan if one is due; the files changed in a burst that just ended, or []."""
        started = self.clock()
        if started < self.due:
            return []
        files = scan(self.folders, self.rules)
        ended = self.clock()
        if files != self.files:
            old, self.files = self.files, files
            self.pending.update(p for p in old.keys() | files.keys() if old.get(p) != files.get(p))
            # Maybe more to come: look again soon, and hand them over once a scan finds
            # nothing new.
            self.due = ended + next_scan_after(ended - started, min(SETTLE, self.interval))
            return []
        self.due = ended + next_scan_after(ended - started, self.interval)
        changed, self.pending = sorted(self.pending), set()
        return changed


def watched_folders(config: Config, cwd: str) -> list[str]:
    """--reload-dir, or the current folder and the folder of a ``path/to/file.py`` TARGET.

    Called after --chdir, so relative folders are taken from there.  A folder inside
    another one is dropped, so no file is scanned twice.
    """
    if config.reload_dir:
        folders = []
        for given in config.reload_dir:
            path = os.path.join(cwd, given)
            if not os.path.isdir(path):
                raise ConfigError(f"--reload-dir {given}: no such folder")
            folders.append(path)
    else:
        folders = [cwd]
        module = config.target.partition(":")[0]
        if module.endswith(".py") or os.sep in module:  # as the app loader tells a file
            folders.append(os.path.dirname(os.path.join(cwd, module)))
    return _outermost(os.path.realpath(folder) for folder in folders)


def _outermost(folders: Iterable[str]) -> list[str]:
    """``folders`` in their order, without repeats or folders inside another one."""
    unique = list(dict.fromkeys(folders))
    return [f for f in unique if not any(_inside(f, other) for other in unique)]


def _inside(folder: str, other: str) -> bool:
    return folder != other and folder.startswith(other.rstrip(os.sep) + os.sep)


def watcher_for(config: Config, cwd: str) -> Watcher:
    """The watcher ``--reload`` asks for; raises ConfigError for a --reload-dir that is not one."""
    rules = Filter(DEFAULT_INCLUDE + config.reload_include, DEFAULT_EXCLUDE + config.reload_exclude)
    return Watcher(watched_folders(config, cwd), rules)


def describe(paths: Sequence[str], cwd: str, limit: int = 5) -> str:
    """``app.py, lib/db.py and 3 more``: paths under ``cwd`` relative to it, others whole."""
    shown = [os.path.relpath(p, cwd) if p.startswith(cwd.rstrip(os.sep) + os.sep) else p
             for p in paths[:limit]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
