"""The worker models, side by side on one base (``base.py``), and the choice between them.

    sync      one request in the app at a time per process (``sync.py``)
    threads   up to ``--threads`` WSGI requests at once per process (``threads.py``)
    asyncio   many ASGI requests at once on an event loop (``asyncio.py``)

The model comes from ``--worker``, else from the app's kind (``--interface``, or told
from the app: ``apps.loader.app_kind``): an ASGI app runs on asyncio,
any other on threads with ``--threads`` above 1, else on sync.  Each model module
is imported only by the worker that runs it, unless the master knows the model before
it forks: with ``--preload`` or ``--worker`` (``import_models``).
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Sequence
from typing import Any, Protocol

from ..apps.loader import AppImportError
from ..config import Config
from .base import Heartbeat

__all__ = ["MODELS", "WorkerModel", "choose_model", "import_models", "make_worker",
           "model_class"]

#: Each model's class, as module:name.
MODELS = {
    "sync": "scgikit.workers.sync:SyncWorker",
    "threads": "scgikit.workers.threads:ThreadedWorker",
    "asyncio": "scgikit.workers.asyncio:AsyncioWorker",
}


class WorkerModel(Protocol):
    """What the worker's start (``master/boot.py``) needs of a model."""

    exit_code: int

    def start(self) -> None:
        """Get ready to serve (the asyncio model runs the ASGI lifespan startup here).

        Raises AppImportError (or any exception) when the app cannot serve.
        """

    def run(self) -> None:
        """Serve until stopped."""


def choose_model(config: Config, kind: str) -> str:
    """The worker model for an app of ``kind``: --worker, or the one the app needs."""
    model = config.worker or (
        "asyncio" if kind == "asgi" else "threads" if config.threads > 1 else "sync")
    if kind == "asgi" and model != "asyncio":
        raise AppImportError(f"an ASGI app needs --worker asyncio, not --worker {model}")
    if kind != "asgi" and model == "asyncio":
        raise AppImportError(f"--worker asyncio serves ASGI apps; this is a {kind} app")
    if config.max_concurrency and model != "asyncio":
        raise AppImportError(f"--max-concurrency applies to the asyncio model (ASGI apps); "
                             f"this {kind} app runs on {model}: drop --max-concurrency")
    if kind == "handler" and model == "threads":
        raise AppImportError(
            "a classic SCGIHandler swaps the process-wide stdin, stdout and os.environ "
            "(produce_cgilike), so it runs on the sync model only: drop --threads/--worker")
    return model


def model_class(model: str) -> Any:
    """The class of ``model`` (a key of MODELS), its module imported: by the worker that
    runs it, and by a master that preloads the app (``--preload``), to share its pages."""
    module_name, _, class_name = MODELS[model].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def import_models(config: Config) -> None:
    """Import now what the workers of ``config`` run on: the WSGI adapter and the classic
    handler's module (every model imports them: ``app_kind`` looks for a handler, the
    ASGI adapter builds on the WSGI one), and the model's module when ``--worker`` names
    it (asyncio, for that model).

    The master does, before it forks, so that the workers share these pages: what a
    worker imports after the fork is its own, and its allocations land in the holes of
    the pages it shares with the master, which they copy.  Workers that drop privileges
    (--user, --group) may then be unable to read Python's own library (one installed in
    a home folder kept 0700): for them every model's module is imported, and the
    library's modules they need (asyncio, say) with them.
    """
    for adapter in ("scgikit.apps.wsgi", "scgikit.apps.handler"):
        importlib.import_module(adapter)
    if config.worker:
        model_class(config.worker)
    elif config.user is not None or config.group is not None:
        for model in MODELS:
            model_class(model)


def make_worker(config: Config, listeners: Sequence[socket.socket], app: Any,
                heartbeat: Heartbeat, ppid: int) -> WorkerModel:
    """The worker for ``app`` (loaded from ``config.target`` when None), of the model it needs."""
    from ..apps import make_adapter
    from ..apps.loader import app_kind, load_target

    if app is None:
        app = load_target(config.target)
    kind = app_kind(app, config.interface)
    model = choose_model(config, kind)
    worker_class = model_class(model)
    if model == "asyncio":
        worker: WorkerModel = worker_class(config, listeners, app, heartbeat, ppid)
        return worker
    adapter = make_adapter(kind, app, config, listeners, multithread=model == "threads")
    worker = worker_class(config, listeners, adapter, heartbeat, ppid)
    return worker
