"""What ``--stats`` adds to each request, in nanoseconds: `python3 bench/stats_cost.py`.

bench/run --stats measures the whole server's CPU time per request with and without
``--stats``; on a shared machine its noise (several percent) is larger than the cost.
This times the added work alone, as the workers do it per request: ``WorkerStats.record``
(the sync and asyncio models), the locked variant (threads), and the check a server
without ``--stats`` makes.  Divide by bench/run's "CPU µs/req" for the share.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from scgikit.connection.metrics import StatsTable  # noqa: E402


def per_call(statement: str, names: dict[str, object], number: int = 1_000_000) -> float:
    """Nanoseconds per run of ``statement``: the best of 5 repeats."""
    best = min(timeit.repeat(statement, globals=names, number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    table = StatsTable(4)
    names: dict[str, object] = {
        "plain": table.worker(0), "locked": table.worker(1).locked(), "none": None,
        "accepted": time.monotonic(),
    }
    empty = per_call("pass", names)
    rows = [
        ("without --stats: `if stats is not None`", "if none is not None: pass"),
        ("record() sync/asyncio, GET", "plain.record('200 OK', 90, 0, accepted)"),
        ("record() sync/asyncio, POST", "plain.record('200 OK', 90, 4096, accepted)"),
        ("record() threads (locked), GET", "locked.record('200 OK', 90, 0, accepted)"),
        ("set_in_flight() threads (twice a request)", "locked.set_in_flight(1)"),
        ("set_in_flight() asyncio (twice a request)", "plain.set_in_flight(1)"),
    ]
    for label, statement in rows:
        print(f"{label:42} {per_call(statement, names) - empty:6.0f} ns")


if __name__ == "__main__":
    main()
