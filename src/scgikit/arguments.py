"""The command line's parser: argparse, with a usage error as one line and exit status 2.

argparse prints the whole usage, then ``prog: error: message``.  An operator's
mistake is one line here, naming the program and the fix's place::

    scgikit serve: argument --workers: expected one argument (see scgikit serve --help)

Every command (``scgikit`` and its subcommands, ``scgi-test``) is built on it, so
a wrong flag reads the same way as a wrong value.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

__all__ = ["ArgumentParser", "decimal", "is_utf8", "one_line"]

_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def decimal(text: str) -> float | None:
    """``text`` as a finite decimal number (``30``, ``0.5``, ``1e3``, ``-1``), else None.

    ``float()`` alone would also take ``1_0``, ``nan``, ``inf`` and other scripts' digits.
    """
    if len(text) > 40 or not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else None


def is_utf8(text: str) -> bool:
    """Whether ``text`` is UTF-8 text: Python keeps bytes of the command line or the
    environment that were not as surrogates, which no encoding takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def one_line(text: str) -> str:
    """``text`` as one printable line: newlines and other control characters escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose usage errors are one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)
