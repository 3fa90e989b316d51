"""``scgikit check --front-end FILE``: the file read, the server's side of it, the report.

The rules are the front-end package's (``frontends.inspection``), pure; here the file is
read and the ``Server`` built from the ``Config``: the addresses it binds, unix paths made
absolute as the server resolves them (after ``--chdir``), or unknown when systemd passes
the sockets.  Each finding is one line, ``FILE:LINE: what; fix: the fix``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..addresses import Address
from ..config import Config
from ..frontends.inspection import ReadError, Server, inspect
from .listeners import passed_fd_count

__all__ = ["check_front_end", "front_end_server"]


def front_end_server(config: Config, environ: Mapping[str, str]) -> Server:
    """The server's settings a front end must agree with, as ``config`` would run."""
    addresses: tuple[Address, ...] | None = None
    if config.bind or not passed_fd_count(environ):
        addresses = tuple(Address(path=os.path.abspath(a.path)) if a.path is not None else a
                          for a in config.addresses)
    return Server(addresses, config.timeout, config.max_body_size, config.front_end_buffering)


def check_front_end(given: str, path: str, server: Server
                    ) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(what was found, errors, warnings) of the front end's configuration at ``path``
    (``given`` on the command line) against ``server``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        return [], [f"--front-end {given}: cannot read it: {reason}"], []
    try:
        kind, findings = inspect(path, text, server)
    except ReadError as exc:
        where = f"{given}:{exc.line}" if exc.line is not None else f"--front-end {given}"
        return [], [f"{where}: {exc}"], []
    errors: list[str] = []
    warnings: list[str] = []
    for finding in findings:
        message = f"{given}:{finding.line}: {finding.what}; fix: {finding.fix}"
        (errors if finding.error else warnings).append(message)
    return [("front end", f"{given} ({kind})")], errors, warnings
