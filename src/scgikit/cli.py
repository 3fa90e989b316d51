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
from collections.abc import Iterable, Sequence

from . import __version__
from .accelerator import ACCELERATED
from .arguments import ArgumentParser

#: subcommand -> (the module holding its HELP, configure() and run(), that HELP): the list
#: of commands (``scgikit --help``) comes from here, so that a command imports its own
#: module only, not every other command's (``serve`` none of the client's, say).
#: tests/test_cli.py checks that each HELP is its module's.
SUBCOMMANDS = {
    "serve": ("scgikit.master.command",
              "serve a WSGI or ASGI app or an SCGIHandler subclass over SCGI"),
    "check": ("scgikit.master.check",
              "check the options, the config file and the app as serve would, without serving"),
    "request": ("scgikit.client_command",
                "send one SCGI request and print the answer (like curl)"),
    "config": ("scgikit.frontends",
               "print a tested nginx, Apache or lighttpd configuration for an scgikit server"),
    "gateway": ("scgikit.gateway",
                "development only: an HTTP/1.1 gateway that forwards requests over SCGI"),
}


def build_parser(configured: Iterable[str] = tuple(SUBCOMMANDS)) -> argparse.ArgumentParser:
    """The parser of ``scgikit``, every subcommand listed; the ``configured`` ones (all, by
    default) with their modules imported and their options added."""
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
    configured = set(configured)
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        if name not in configured:
            commands.add_parser(name, help=help_line)
            continue
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


def chosen_command(argv: Sequence[str]) -> list[str]:
    """The subcommand ``argv`` names (the first word that is not an option), as a list of
    none or one: the one whose module ``main`` imports."""
    for word in argv:
        if word == "--":
            break
        if not word.startswith("-"):
            return [word] if word in SUBCOMMANDS else []
    return []


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(chosen_command(argv))
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
