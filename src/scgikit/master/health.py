"""``/healthz`` and ``/readyz``: the master's view of its workers, for a load balancer or an
orchestrator, served on the ``--stats`` listener (``stats.py``) from the master's loop.

``/healthz`` answers 200 when the master is alive (it answers at all) and at least one
worker is ready to serve, else 503: a liveness check.  ``/readyz`` answers 200 when, in
addition, the master is neither stopping nor reloading, else 503: a balancer that polls
it drains this server before a stop or a reload.  Both bodies are the same small JSON
object of counts, so a probe that fails says why::

    {"status": "ok", "ready": 2, "booting": 0, "wanted": 2, "stopping": false,
     "reloading": false}

``ready`` counts the workers that said "ready" and were not told to stop (a worker
being replaced after ``--max-memory`` or ``--max-lifetime`` still serves, and counts),
``booting`` those still loading the app, ``wanted`` the number the master keeps.
"""

from __future__ import annotations

import json
from typing import TypedDict

from .roster import MasterState

__all__ = ["CONTENT_TYPE", "health", "readiness"]

CONTENT_TYPE = "application/json"
Page = tuple[str, str, str]  # status line, content type, body


class Figures(TypedDict):
    ready: int
    booting: int
    wanted: int
    stopping: bool
    reloading: bool


def health(state: MasterState) -> Page:
    """``/healthz``: 200 while at least one worker is ready."""
    figures = _figures(state)
    return _page(figures, figures["ready"] > 0)


def readiness(state: MasterState) -> Page:
    """``/readyz``: 200 while a worker is ready and the master neither stops nor reloads."""
    figures = _figures(state)
    return _page(figures, figures["ready"] > 0 and not (figures["stopping"]
                                                        or figures["reloading"]))


def _figures(state: MasterState) -> Figures:
    running = [w for w in state.workers.values() if w.stopping_since is None]
    ready = sum(w.ready for w in running)
    return {"ready": ready, "booting": len(running) - ready, "wanted": state.wanted,
            "stopping": state.stopping, "reloading": state.generation != state.live_generation}


def _page(figures: Figures, ok: bool) -> Page:
    body = json.dumps({"status": "ok" if ok else "unavailable", **figures}) + "\n"
    return ("200 OK" if ok else "503 Service Unavailable"), CONTENT_TYPE, body
