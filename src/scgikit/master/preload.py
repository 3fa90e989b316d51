"""Loading the app in the master: ``--preload``, and ``scgikit check``.

With ``--preload`` the master imports the app once, after ``--env`` and ``--chdir``
(``boot.prepare_process``) and before it binds a socket, and every worker forks
with it already loaded, and with the module of its worker model: a faster start,
and the memory of both shared copy-on-write with the workers.  It is loaded by the
workers' own code (``apps.loader.load_target``, ``app_kind`` with ``--interface``,
``workers.choose_model``), so what a worker would refuse is refused here.  What each
worker makes of the app is still made in each worker: a classic handler (its class
or factory is called there), an ASGI app's lifespan.

An app that cannot be loaded is one line (``load_failure``, the words of ``scgikit
check``) and exit status 4 (a worker's ``APP_LOAD_ERROR``), before anything is bound.

The price is the reload: a HUP, or a worker recycled by ``--max-requests``, forks
from the master again, with the code the master loaded at start (gunicorn's
caveat); ``code_kept`` is what the master logs on HUP.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from ..apps.loader import AppImportError, app_kind, load_target
from ..config import Config
from ..workers import choose_model, model_class

__all__ = ["AppLoadFailure", "code_kept", "load_app", "load_failure", "preload"]

log = logging.getLogger("scgikit")


class AppLoadFailure(Exception):
    """The app could not be loaded in the master; the message is one line, saying why."""


def load_app(config: Config) -> tuple[Any, str, str]:
    """The app ``config.target`` names, its kind and its worker model, as a worker finds them."""
    app = load_target(config.target)
    kind = app_kind(app, config.interface)
    return app, kind, choose_model(config, kind)


def preload(config: Config) -> Any:
    """``--preload``: the app, loaded in this process (the master).  Raises
    ``AppLoadFailure`` when it cannot be, whatever the app raised (``sys.exit``
    included)."""
    try:
        app, kind, model = load_app(config)
        model_class(model)  # imported once here too, rather than in each worker
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise AppLoadFailure(load_failure(exc, config.target)) from None
    log.info("Loaded %s in the master (--preload): %s app, %s model", config.target, kind, model)
    return app


def code_kept(config: Config, app: Any) -> str | None:
    """What a reload does not do when the master holds the app; None when it imports afresh."""
    if app is None:
        return None
    how = ("loaded in the master (--preload)" if config.preload
           else "given to the server as an object")
    return (f"Reload: the app was {how}: the new workers run the code loaded at start; "
            "restart the server to load new code")


def load_failure(exc: BaseException, target: str) -> str:
    """Why the app ``target`` did not load, in one line: ``cannot load the app ...``."""
    if isinstance(exc, AppImportError):
        return f"cannot load the app: {exc}"
    if isinstance(exc, SystemExit):
        return f"cannot load the app {target!r}: it exited: {exit_text(exc)}"
    return f"cannot load the app {target!r}: {_one_line(exc)}"


def exit_text(exc: SystemExit) -> str:
    """What an app's ``sys.exit`` said: its message, or the call."""
    if exc.code is None or isinstance(exc.code, int):
        return f"sys.exit({'' if exc.code is None else exc.code})"
    return str(exc.code)


def _one_line(exc: BaseException) -> str:
    """``Type: message (at file, line N)``: where the app's own code failed."""
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{summary} (at {exc.filename}, line {exc.lineno})"
    where = _app_frame(exc)
    return f"{summary} (at {where.filename}, line {where.lineno})" if where else summary


def _app_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame outside Python's library and scgikit, else the innermost."""
    import sysconfig  # here, with pathlib: only an app that fails to load needs them
    from pathlib import Path

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<")]
    outside = (sysconfig.get_paths()["stdlib"], str(Path(__file__).parent.parent))
    own = [f for f in frames if not f.filename.startswith(outside)]
    chosen = own or frames
    return chosen[-1] if chosen else None
