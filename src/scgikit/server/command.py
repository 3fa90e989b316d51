"""``scgikit serve TARGET``: run the pre-forking server for a WSGI app or an SCGIHandler."""

from __future__ import annotations

import argparse
import os

from ..config import ConfigError, add_arguments, from_arguments

HELP = "serve a WSGI app or an SCGIHandler subclass over SCGI"
DESCRIPTION = """\
Serve TARGET over SCGI with a pre-forking master and --workers worker processes.

TARGET is MODULE:ATTRIBUTE, MODULE:FACTORY() or path/to/file.py:ATTRIBUTE, naming a
WSGI callable or a subclass of scgikit.scgi_server.SCGIHandler.

Signals to the master: TERM/INT graceful stop, QUIT immediate stop, HUP graceful
reload (new workers load the app afresh), TTIN/TTOU one worker more/fewer."""
EPILOG = """\
examples:
  scgikit serve myapp:app
  scgikit serve myapp:create_app() --bind unix:/run/myapp.sock --workers 4
  scgikit serve examples/hello.py:app --bind 127.0.0.1:4000 --access-log -
  scgikit serve legacy:YourHandler --max-requests 1000 --max-requests-jitter 100"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="MODULE:ATTRIBUTE naming the app")
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .arbiter import Arbiter, setup_logging

    try:
        config = from_arguments(args, os.environ, target=args.target)
    except ConfigError as exc:
        print(f"scgikit serve: {exc}", file=__import__("sys").stderr)
        return 2
    setup_logging(config)
    return Arbiter(config).run()
