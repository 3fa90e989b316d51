"""``scgikit serve TARGET``: run the pre-forking server for a WSGI or ASGI app or an SCGIHandler."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..arguments import one_line
from ..config import Config, ConfigError
from ..options import add_arguments
from .reconfigure import Origin

HELP = "serve a WSGI or ASGI app or an SCGIHandler subclass over SCGI"
DESCRIPTION = """\
Serve TARGET over SCGI with a pre-forking master and --workers worker processes.

TARGET is MODULE:ATTRIBUTE, MODULE:FACTORY() or path/to/file.py:ATTRIBUTE, naming a
WSGI callable, an ASGI 3 app (served on the asyncio model), a subclass of
scgikit.scgi_server.SCGIHandler or a handler factory (a function that takes parent_fd
and returns a handler, marked @handler_factory or served with --interface handler).
--threads N runs N WSGI requests per worker at once.

Options may also come from a TOML file (--config FILE; keys are the long flags without
their dashes, and "app" names TARGET): the command line wins over SCGIKIT_* variables,
which win over the file.

Signals to the master: TERM/INT graceful stop, QUIT immediate stop, HUP graceful
reload (new workers load the app afresh; with --preload the master loaded it once,
before the fork, and new workers run that code; the --config file is read again,
but for the settings that take a restart), TTIN/TTOU one worker more/fewer."""
EPILOG = """\
examples:
  scgikit serve myapp:app
  scgikit serve myapp:create_app() --bind unix:/run/myapp.sock --workers 4
  scgikit serve examples/hello.py:app --bind 127.0.0.1:4000 --access-log -
  scgikit serve legacy:YourHandler --max-requests 1000 --max-requests-jitter 100
  scgikit serve legacy:create_handler --interface handler
  scgikit serve myapp:app --threads 8
  scgikit serve myapi:app --bind /run/myapi.sock     # an ASGI app (FastAPI, Starlette)
  scgikit serve -c /etc/myapp/scgikit.toml          # app = "myapp:app" in the file"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", default=None,
                        help="MODULE:ATTRIBUTE naming the app (or app in the --config file)")
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped.  Every start-up error of the operator's is one plain line,
    ``scgikit serve: --OPTION...: what is wrong``, and exit status 2; an app that cannot
    be loaded with --preload is one line too, with exit status 4."""
    from .preload import AppLoadFailure
    from .roster import APP_LOAD_ERROR

    try:
        return _serve(args)
    except ConfigError as exc:
        print(f"scgikit serve: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except AppLoadFailure as exc:  # --preload: before anything was bound
        print(f"scgikit serve: {one_line(str(exc))}", file=sys.stderr)
        return APP_LOAD_ERROR


def build_config(args: argparse.Namespace) -> Config:
    """The ``Config`` of ``serve`` and ``check``: options, environment, file; and an app."""
    return Origin(args, os.environ).config()


def _serve(args: argparse.Namespace) -> int:
    # The environment as it is now: a HUP re-reads the --config file with this one.
    origin = Origin(args, dict(os.environ))
    return run_server(origin.config(), origin=origin)


def run_server(config: Config, app: Any = None, origin: Origin | None = None) -> int:
    """Check ``config`` against this machine, open the logs, and serve until stopped
    (``scgikit serve``, and ``SCGIServer.serve``).  Raises ``ConfigError`` before
    anything is bound or written when the settings are unusable, and ``AppLoadFailure``
    when --preload cannot load the app.  With ``origin``, what ``config`` was built from,
    a HUP re-reads its --config file (``reconfigure.py``)."""
    from .arbiter import Arbiter
    from .logs import setup_logging
    from .preflight import ensure_startable

    ensure_startable(config)
    try:
        setup_logging(config)
    except OSError as exc:
        raise ConfigError(f"{config.access_log}: cannot write it: {exc.strerror or exc}",
                          "access_log") from None
    return Arbiter(config, app=app, origin=origin).run()
