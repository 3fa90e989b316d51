"""``scgikit check [options] TARGET``: what ``scgikit serve`` would do, without serving.

The ``Config`` is built as ``serve`` builds it (command line, ``SCGIKIT_*``
variables, ``--config`` file), then the app is loaded by the workers' own code
(``preload.load_app``: ``apps.loader.load_target`` and ``app_kind`` with
``--interface``, ``workers.choose_model``; a classic handler is made, as each worker
makes its one) and the report says what was found: the app's kind, the worker model,
whether the master preloads it (``--preload``), the addresses.  A failure is told in
the words ``serve --preload`` uses (``preload.load_failure``).

The settings are checked by ``serve``'s own code: ``Config`` for each value and
how they go together, then ``preflight.problems`` against this machine (users,
folders, the pid file and the access log, unix socket folders, files in the way,
``fd://N``).  Each is an error, as it would stop ``serve``.

Nothing listens.  What depends on the moment is a warning only: a port below
the kernel's unprivileged start (a capability may allow it), a port or a unix
socket some server of this machine holds now (from /proc/net).  No socket is
bound or connected to, so a check can run beside the server it checks.  The one
side effect is the app's import: its module-level code runs, as in every worker,
and so does a classic handler's ``__init__`` (or its factory); an ASGI app's
lifespan startup is not run.

With ``--front-end FILE`` the nginx, Apache or lighttpd configuration in front of
the server is read and compared with these settings (``front_end``): a mismatch that
loses or breaks requests is an error, one of time or taste a warning.

Exit status: 0 when ``serve`` would start (warnings may be printed), 2 when a
setting is unusable (as ``serve``) or the front end's configuration does not fit, 4
when the app cannot be loaded (as a worker's ``APP_LOAD_ERROR``); with both, 2.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..addresses import Address, parse_address
from ..arguments import one_line
from ..config import Config, ConfigError
from .boot import prepare_process
from .command import build_config
from .command import configure as configure_serve
from .front_end import check_front_end, front_end_server
from .listeners import is_wildcard, passed_fd_count
from .preflight import problems
from .preload import load_app, load_failure
from .roster import APP_LOAD_ERROR

HELP = "check the options, the config file and the app as serve would, without serving"
DESCRIPTION = """\
Check what `scgikit serve` would do with the same options, without serving: build the
configuration (options, SCGIKIT_* variables, --config file), load the app as a worker
would, and report its kind, the worker model and the addresses it would listen at.
Every setting serve would refuse is an error here too. Nothing is bound: an address
some server holds now, or a privileged port, is a warning. With --front-end FILE, the
front end's configuration is compared with the settings too, each mismatch with its fix.

Exit status: 0 fine (warnings allowed), 2 an unusable setting or a front end that does
not fit, 4 an app that cannot be loaded (the codes of scgikit serve)."""
EPILOG = """\
examples:
  scgikit check myapp:app --workers 4
  scgikit check -c /etc/myapp/scgikit.toml
  scgikit check myapp:app --bind unix:/run/app.sock --front-end /etc/nginx/sites-enabled/app"""

CONFIG_ERROR = 2


@dataclass
class Report:
    """What a check found (label, value), its warnings, and its errors with their status."""

    found: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return min(code for code, _ in self.errors) if self.errors else 0


def configure(parser: argparse.ArgumentParser) -> None:
    configure_serve(parser)
    parser.add_argument("--front-end", metavar="FILE", help="also read this nginx, Apache or "
                        "lighttpd configuration (told apart by its content) and report each "
                        "place it does not fit these settings, with its fix; nginx's is read "
                        "with crossplane: pip install 'scgikit[frontend]'")


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"scgikit check: error: {one_line(str(exc))}", file=sys.stderr)
        return CONFIG_ERROR
    given = getattr(args, "front_end", None)
    front_end = (given, os.path.abspath(given)) if given else None  # before --chdir moves us
    report = check(config, os.environ, front_end)
    for label, value in report.found:
        print(f"{label}: {value}")
    for message in report.warnings:
        print(f"scgikit check: warning: {one_line(message)}", file=sys.stderr)
    for _, message in report.errors:
        print(f"scgikit check: error: {one_line(message)}", file=sys.stderr)
    if not report.errors:
        print("ok")
    return report.status


def check(config: Config, environ: Mapping[str, str],
          front_end: tuple[str, str] | None = None) -> Report:
    """Check ``config`` as ``serve`` would start it: settings, addresses, then the app; then
    the configuration of the ``front_end`` (the file as given, and its absolute path)
    against them (``front_end.check_front_end``)."""
    report = Report()
    if config.config_file:
        report.found.append(("config file", config.config_file))
    unusable = problems(config)  # what serve refuses before it binds: all of it
    report.errors.extend((CONFIG_ERROR, str(error)) for error in unusable)
    if not any(error.option == "chdir" for error in unusable):
        _prepare_process(config, report)  # before the addresses: a relative path follows --chdir
    _check_addresses(config, environ, report)
    _check_app(config, report)
    if front_end is not None:
        found, errors, warnings = check_front_end(*front_end, front_end_server(config, environ))
        report.found.extend(found)
        report.errors.extend((CONFIG_ERROR, message) for message in errors)
        report.warnings.extend(warnings)
    return report


def _prepare_process(config: Config, report: Report) -> None:
    """As the master before it forks (``boot.prepare_process``)."""
    try:
        prepare_process(config)
    except ConfigError as exc:
        report.errors.append((CONFIG_ERROR, str(exc)))


# --- the app ---------------------------------------------------------------------------


def _check_app(config: Config, report: Report) -> None:
    from ..apps.loader import make_handler

    try:
        app, kind, model = load_app(config)
        if kind == "handler":
            make_handler(app)  # as each worker makes its handler: a factory is called
        if model == "asyncio":
            from ..workers.asyncio import new_event_loop

            new_event_loop(config.loop).close()  # --loop uvloop without uvloop
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        report.errors.append((APP_LOAD_ERROR, load_failure(exc, config.target)))
        return
    named = "" if config.interface == "auto" else f", --interface {config.interface}"
    report.found.append(("app", f"{config.target} ({_kind_name(kind, app)}{named})"))
    report.found.append(("worker model", _model_text(config, model)))
    if config.preload:
        report.found.append(("preloaded", "in the master, before the workers fork (--preload); "
                                          "a HUP replaces the workers, not the code"))
    if kind == "asgi" and config.threads > 1:
        report.warnings.append(
            f"--threads {config.threads} is ignored: an ASGI app runs on the asyncio model, "
            "where one worker serves many requests at once on its event loop")


_KIND_NAMES = {"wsgi": "a WSGI app", "asgi": "an ASGI app", "handler": "a classic SCGIHandler"}


def _kind_name(kind: str, app: object) -> str:
    if kind == "handler" and not isinstance(app, type):
        return "a classic handler factory"
    return _KIND_NAMES[kind]


def _model_text(config: Config, model: str) -> str:
    threads = f" of {config.threads} threads each" if model == "threads" else ""
    return f"{model}, {config.workers} worker process{'es' if config.workers > 1 else ''}" \
        + threads


# --- the addresses -----------------------------------------------------------------------


def _check_addresses(config: Config, environ: Mapping[str, str], report: Report) -> None:
    count = passed_fd_count(environ)
    if not config.bind and count:
        report.found.append(("listen at", f"the {count} socket(s) systemd passes "
                                           "(LISTEN_FDS)"))
        return
    http = parse_address(config.http) if config.http else None
    listening = _listening_sockets({address.family for address in (*config.addresses, http)
                                    if address is not None})
    for address in config.addresses:
        report.found.append(("listen at", str(address)))
        report.warnings.extend(_address_warnings(address, config, listening))
    if http is not None:
        report.found.append(("HTTP gateway at", str(http)))
        if _tcp_in_use(http, listening):
            report.warnings.append(f"--http {http}: a socket of this machine already listens "
                                   "there; serve would fail to start, unless it stops first")


def _address_warnings(address: Address, config: Config,
                      listening: set[tuple[int, str, int | str]]) -> list[str]:
    if address.fd is not None:
        return []  # preflight's
    if address.path is not None:
        return _unix_warnings(address.path, listening)
    assert address.host is not None and address.port is not None
    warnings = []
    start = _unprivileged_port_start()
    if 0 < address.port < start and os.geteuid() != 0:
        warnings.append(f"{address}: ports below {start} need root; serve would fail "
                        "to listen there")
    if _tcp_in_use(address, listening):
        warnings.append(f"{address}: a socket of this machine already listens there; "
                        "serve would fail to listen, unless that server stops first")
    if is_wildcard((address.host, address.port)) and not config.allow_from:
        warnings.append(f"{address} listens on every network interface, and SCGI has no "
                        "authentication: admit only the front end with --allow-from")
    return warnings


def _unix_warnings(path: str, listening: set[tuple[int, str, int | str]]) -> list[str]:
    """A socket file some running server holds (a missing folder, a file in the way are
    preflight's errors)."""
    if (socket.AF_UNIX, os.path.abspath(path), 0) in listening:
        return [f"unix:{path} is in use by a running server; serve would refuse it"]
    return []


def _tcp_in_use(address: Address, listening: set[tuple[int, str, int | str]]) -> bool:
    family = address.family
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    if address.port == 0:
        return False
    if address.host == wildcard:
        return any(fam == family and port == address.port for fam, _, port in listening)
    return bool({(family, address.host, address.port), (family, wildcard, address.port)}
                & listening)


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def _listening_sockets(families: set[int]) -> set[tuple[int, str, int | str]]:
    """(family, host or path, port or 0) of every listening socket of ``families`` the
    kernel shows us.

    Read from /proc/net (Linux; elsewhere nothing is found): looking, not binding.  Only
    the tables of the families asked for: a busy machine's TCP table is long.
    """
    found: set[tuple[int, str, int | str]] = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        if family not in families:
            continue
        for fields in _proc_net(name):
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                host, _, port = fields[1].partition(":")
                found.add((family, _proc_host(host, family), int(port, 16)))
    for fields in _proc_net("unix") if socket.AF_UNIX in families else ():
        # Flags 00010000 is __SO_ACCEPTCON: a listening socket.
        if len(fields) > 7 and int(fields[3], 16) & 0x10000:
            found.add((socket.AF_UNIX, os.path.abspath(fields[7]), 0))
    return found


def _proc_net(name: str) -> list[list[str]]:
    try:
        lines = Path("/proc/net", name).read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split() for line in lines]


def _proc_host(text: str, family: int) -> str:
    """An address of /proc/net/tcp: 32-bit words in the host's byte order."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] if sys.byteorder == "little" else raw[i:i + 4]
                     for i in range(0, len(raw), 4))
    try:
        return socket.inet_ntop(family, words)
    except (OSError, ValueError):
        return ""

