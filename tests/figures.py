"""Figures the reliability tests measure, collected for docs/reliability.md.

A test calls ``record(...)`` with what it measured; when ``SCGIKIT_FIGURES``
names a file (``scripts/reliability-report`` sets it), each figure is appended
to it as one JSON line.  Otherwise recording costs nothing.
"""

from __future__ import annotations

import json
import os


def record(case: str, transport: str, server: str = "scgikit", **figures: object) -> None:
    path = os.environ.get("SCGIKIT_FIGURES")
    if not path:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps({"case": case, "transport": transport, "server": server,
                             **figures}) + "\n")
