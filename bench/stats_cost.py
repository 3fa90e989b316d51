"""What ``--stats`` adds to each request, in nanoseconds: `python3 bench/stats_cost.py`.

bench/run --stats measures the whole server's CPU time per request with and without
``--stats``; on a shared machine its noise (several percent) is larger than the cost.
This times the added work alone, as the workers do it per request: ``WorkerStats.record``
(the sync and asyncio models), the locked variant (threads), and the check a server
without ``--stats`` makes; then the queue time (``queue_time.py``) alone, without and with a
front end's stamp, and in the access log's ``{queue_ms}``.  Divide by bench/run's
"CPU µs/req" for the share.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from scgikit.accesslog import Access, compile_access_format  # noqa: E402
from scgikit.connection.metrics import StatsTable  # noqa: E402
from scgikit.queue_time import queue_seconds  # noqa: E402

#: nginx's variables for a GET (scgi_params), as the workers' parser gives them.
NGINX = {name: "x" for name in (
    "CONTENT_LENGTH", "QUERY_STRING", "REQUEST_METHOD", "CONTENT_TYPE", "REQUEST_URI",
    "DOCUMENT_URI", "DOCUMENT_ROOT", "SCGI", "SERVER_PROTOCOL", "REQUEST_SCHEME",
    "REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT", "SERVER_NAME", "HTTP_HOST",
    "HTTP_USER_AGENT", "HTTP_ACCEPT")}


def per_call(statement: str, names: dict[str, object], number: int = 1_000_000) -> float:
    """Nanoseconds per run of ``statement``: the best of 5 repeats."""
    best = min(timeit.repeat(statement, globals=names, number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    table = StatsTable(4)
    names: dict[str, object] = {
        "plain": table.worker(0), "locked": table.worker(1).locked(), "none": None,
        "accepted": time.monotonic(), "queue_seconds": queue_seconds,
        "bare": NGINX, "stamped": {**NGINX, "REQUEST_START": f"{time.time():.3f}"},
        "header": {**NGINX, "HTTP_X_REQUEST_START": f"t={int(time.time() * 1e6)}"},
        "field": compile_access_format("{queue_ms}").getters[0],  # type: ignore[union-attr]
    }
    names["access"] = Access(names["stamped"], "200 OK", 90, time.monotonic(), "sync")  # type: ignore[arg-type]
    empty = per_call("pass", names)
    rows = [
        ("without --stats: `if stats is not None`", "if none is not None: pass"),
        ("record() sync/asyncio, GET", "plain.record('200 OK', 90, 0, accepted, bare)"),
        ("record() sync/asyncio, POST", "plain.record('200 OK', 90, 4096, accepted, bare)"),
        ("record() threads (locked), GET", "locked.record('200 OK', 90, 0, accepted, bare)"),
        ("record() sync/asyncio, GET, REQUEST_START",
         "plain.record('200 OK', 90, 0, accepted, stamped)"),
        ("queue_seconds(), no stamp", "queue_seconds(bare, accepted)"),
        ("queue_seconds(), REQUEST_START (nginx)", "queue_seconds(stamped, accepted)"),
        ("queue_seconds(), X-Request-Start (Apache)", "queue_seconds(header, accepted)"),
        ("{queue_ms} in the access log, REQUEST_START", "field(access, 0.0, 1)"),
        ("set_in_flight() threads (twice a request)", "locked.set_in_flight(1)"),
        ("set_in_flight() asyncio (twice a request)", "plain.set_in_flight(1)"),
    ]
    for label, statement in rows:
        print(f"{label:42} {per_call(statement, names) - empty:6.0f} ns")


if __name__ == "__main__":
    main()
