"""The command line: ``scgikit SUBCOMMAND`` and ``scgi-test``; the only place that exits.

Each subcommand lives in the module that does its work, which exposes
``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.  Errors
that are the operator's (a bad option, an app that does not import) are
printed as one line, with no traceback, and give a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .accelerator import ACCELERATED
from .arguments import ArgumentParser

# subcommand -> module holding HELP, configure() and run()
SUBCOMMANDS = {
    "serve": "scgikit.master.command",
    "check": "scgikit.master.check",
    "request": "scgikit.client_command",
    "config": "scgikit.frontends",
    "gateway": "scgikit.gateway",
}


def build_parser() -> argparse.ArgumentParser:
    # Subcommands' parsers are of the same class: every usage error is one line.
    parser = ArgumentParser(
        prog="scgikit",
        description="The SCGI toolkit: server, client and front-end configurations.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version's two lines
    )
    accelerator = "on" if ACCELERATED else "off (pure Python)"
    parser.add_argument("--version", action="version",
                        version=f"scgikit {__version__}\nC accelerator: {accelerator}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # not built yet
        sub = commands.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(sub)
        sub.set_defaults(run=module.run, subparser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would blame the top-level program ("scgikit: error:"); the options
        # were given to the subcommand, whose usage line says what it takes.
        getattr(args, "subparser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


def scgi_test_main(argv: Sequence[str] | None = None) -> int:
    """``scgi-test URI``: the classic tool that prints a server's raw answer."""
    from .client_command import scgi_test

    return scgi_test(argv)
