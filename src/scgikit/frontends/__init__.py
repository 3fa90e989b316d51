"""Front-end configurations: ``scgikit config nginx|apache|lighttpd``.

One template per front end sits beside this module (``nginx.conf``,
``apache.conf``, ``lighttpd.conf``); ``render`` fills it in.  The docs show
what it prints and the end-to-end tests run the real front ends on exactly
that text, wrapped in a test harness, so docs, tool and tests cannot drift.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

from ..addresses import Address
from . import values
from .values import FrontendError, Listen

__all__ = ["FRONT_ENDS", "FrontendError", "check", "render"]

FRONT_ENDS = ("nginx", "apache", "lighttpd")

HELP = "print a tested nginx, Apache or lighttpd configuration for an scgikit server"
DESCRIPTION = (
    "Print the minimal configuration that puts a front end before `scgikit serve`: the same\n"
    "text docs/frontends.md shows and the test suite runs against the real servers."
)
EPILOG = """\
examples:
  scgikit config nginx                                   app at /, backend 127.0.0.1:4000
  scgikit config nginx --bind unix:/run/app.sock --prefix /app
  scgikit config nginx --bind 10.0.0.1:4000 --bind 10.0.0.2:4000   an upstream of two hosts,
                                                         with failover (docs/deploy.md)
  scgikit config nginx --bind 10.0.0.1:4000 --bind 10.0.0.2:4000 --down 10.0.0.2:4000
                                                         the same, 10.0.0.2 drained for a restart
  scgikit config apache --server-name example.org
  scgikit config lighttpd --prefix /app --listen 8080
"""


#: How long nginx leaves out a backend that failed, before it tries it again (nginx's default).
FAIL_TIMEOUT = 10
DEFAULT_BIND = "127.0.0.1:4000"


@dataclass(frozen=True)
class Settings:
    """The options of one configuration, each checked (values.py) and in its written form."""

    server: str
    addresses: list[Address]
    prefix: str
    server_name: str | None  # None: not given (nginx and Apache write localhost)
    listen: Listen | None  # None: not given (nginx and Apache write port 80)
    fail_timeout: int | None
    down: list[Address]

    @property
    def command(self) -> str:
        """The ``scgikit config`` command line that prints this configuration."""
        argv = [self.server]
        if [str(a) for a in self.addresses] != [DEFAULT_BIND]:
            argv += [word for a in self.addresses for word in ("--bind", str(a))]
        if self.prefix != "/":
            argv += ["--prefix", self.prefix]
        if self.server_name is not None:
            argv += ["--server-name", self.server_name]
        if self.listen is not None:
            argv += ["--listen", str(self.listen)]
        if self.fail_timeout is not None:
            argv += ["--fail-timeout", str(self.fail_timeout)]
        argv += [word for a in self.down for word in ("--down", str(a))]
        return "scgikit config " + " ".join(shlex.quote(word) for word in argv)


def render(server: str, bind: Sequence[str] = (DEFAULT_BIND,), prefix: str = "/",
           server_name: str | None = None, listen: int | str | None = None,
           fail_timeout: int | str | None = None, down: Sequence[str] = ()) -> str:
    """The configuration snippet for ``server`` in front of the scgikit server(s) at ``bind``.

    Several ``bind`` addresses (nginx only) are several backends, one per host: an
    ``upstream`` block with failover, and one ``scgikit serve`` line per backend in the hint.
    ``down`` names backends nginx sends nothing new to (marked ``down``), to restart them.
    Every value is checked first (values.py): a FrontendError names the one at fault.
    """
    settings = check(server, bind, prefix, server_name, listen, fail_timeout, down)
    script_name = f" --script-name {settings.prefix}" if (
        settings.prefix != "/" and server != "lighttpd") else ""
    first = settings.addresses[0]
    listening = settings.listen or Listen(80)
    values = {
        "command": settings.command, "start": _start_hint(settings.addresses, script_name),
        "serve": f"scgikit serve APP --bind {first}{script_name}",
        "server_name": settings.server_name or "localhost", "listen": str(listening),
        "prefix": settings.prefix,
    }
    values.update(_BUILDERS[server](settings))
    text = Template(resources.files(__package__).joinpath(f"{server}.conf").read_text())
    lines = text.substitute(values).splitlines()
    return "\n".join(line for line in lines if line != "\0") + "\n"


def check(server: str, bind: Sequence[str], prefix: str, server_name: str | None,
          listen: int | str | None, fail_timeout: int | str | None,
          down: Sequence[str]) -> Settings:
    """Each value checked on its own, then together; FrontendError names the first at fault."""
    if server not in FRONT_ENDS:
        raise FrontendError("front end", server, f"unknown; choose one of "
                            f"{', '.join(FRONT_ENDS)}")
    settings = Settings(
        server, [values.backend("--bind", text, server) for text in bind or (DEFAULT_BIND,)],
        values.prefix(prefix),
        None if server_name is None else values.server_name(server_name),
        None if listen is None else values.listen(str(listen)),
        None if fail_timeout is None else values.fail_timeout(fail_timeout),
        [values.backend("--down", text, server) for text in down])
    _check_backends(settings, list(bind), list(down))
    return settings


def _check_backends(settings: Settings, bind: list[str], down: list[str]) -> None:
    """Several backends are an nginx upstream; --fail-timeout and --down need one."""
    addresses = settings.addresses
    for i, address in enumerate(addresses):
        if address in addresses[:i]:
            raise FrontendError("--bind", bind[i], "named twice; give each backend once")
    if len(addresses) > 1 and settings.server != "nginx":
        raise FrontendError("--bind", bind[1], f"several backends: only the nginx config "
                            f"balances them; write one {settings.server} "
                            f"{_ENTRY[settings.server]} entry per backend")
    upstream = len(addresses) > 1
    if settings.fail_timeout is not None and not upstream:
        raise FrontendError("--fail-timeout", settings.fail_timeout,
                            "only for an nginx upstream of several --bind backends")
    for text, address in zip(down, settings.down):
        if not upstream or address not in addresses:
            raise FrontendError("--down", text, "not one of the --bind backends of an "
                                "nginx upstream")
    if settings.down and set(settings.down) == set(addresses):
        raise FrontendError("--down", down[-1], "names the last backend up: nginx would "
                            "have none to send to")


_ENTRY = {"apache": "ProxyPass", "lighttpd": "scgi.server"}


def _start_hint(addresses: list[Address], script_name: str) -> str:
    """The comment lines that tell how to start the backend, or each of several."""
    if len(addresses) == 1:
        return f"# Start the app with: scgikit serve APP --bind {addresses[0]}{script_name}"
    lines = ["# Start one backend per address, each on its own host (see docs/deploy.md):"]
    for address in addresses:
        host = "this host" if address.path is not None else address.host
        lines.append(f"#   on {host}: scgikit serve APP --bind {address}{script_name}")
    return "\n".join(lines)


def _nginx_target(address: Address) -> str:
    return f"unix:{address.path}" if address.path is not None else str(address)


# Failover for several backends.  nginx resends a request to the next backend after a
# connection error or timeout, but never one whose method is not idempotent (POST, PATCH,
# LOCK) once it was sent: that backend may have acted on it.  "non_idempotent" would lift
# that guard, so the generated text says why it is absent.
_UPSTREAM_OPTIONS = """\
        # A backend that refuses or drops the connection, or times out, before it answered:
        # the request goes to the next backend, at most once to each. A POST (or PATCH,
        # LOCK) that reached a backend is never sent again: "non_idempotent" is left out
        # on purpose, since that backend may have acted on it before it failed.
        scgi_next_upstream error timeout;
        scgi_next_upstream_tries $tries;
        # Backends on the local network connect at once; a host that does not answer
        # within this time is treated as down and the request goes to the next one.
        scgi_connect_timeout 2s;
"""


def _nginx(settings: Settings) -> dict[str, str]:
    addresses, prefix = settings.addresses, settings.prefix
    options = ""
    if len(addresses) > 1:
        limits = f"max_fails=1 fail_timeout={settings.fail_timeout or FAIL_TIMEOUT}s"
        servers = "".join(f"    server {_nginx_target(a)} {limits}"
                          f"{' down' * (a in settings.down)};\n" for a in addresses)
        upstream = ("# A backend that fails a request is left out for fail_timeout, then tried "
                    "again.\n"
                    f"upstream scgikit_app {{\n{servers}}}\n")
        target = "scgikit_app"
        options = Template(_UPSTREAM_OPTIONS).substitute(tries=len(addresses))
    else:
        upstream, target = "\0", _nginx_target(addresses[0])
    redirect = ""
    if prefix != "/":
        redirect = f"    location = {prefix} {{\n        return 301 {prefix}/;\n    }}\n\n"
    return {"upstream_block": upstream, "pass": target, "prefix_redirect": redirect,
            "location": prefix if prefix == "/" else prefix + "/", "failover": options}


def _apache(settings: Settings) -> dict[str, str]:
    address = settings.addresses[0]
    backend = (f"scgi://{address}" if address.path is None
               else f"unix:{address.path}|scgi://localhost")
    listen = settings.listen or Listen(80)
    vhost = f"*:{listen.port}" if listen.host is None else str(listen)
    hint = "\0" if settings.listen is None else (
        f"# Apache listens on {listen} only if told: Listen {listen} "
        f"(Debian: /etc/apache2/ports.conf)")
    return {"url": backend + settings.prefix, "vhost": vhost, "listen_hint": hint}


_LIGHTTPD_SCGI = """\
scgi.server = (
    "$prefix" => ((
$backend
        "check-local" => "disable",$fix_root
    )),
)"""


def _lighttpd(settings: Settings) -> dict[str, str]:
    address = settings.addresses[0]
    if address.path is not None:
        backend = f'        "socket" => "{address.path}",'
    else:
        backend = f'        "host" => "{address.host}",\n        "port" => {address.port},'
    # At "/", lighttpd would put the whole path in SCRIPT_NAME; this puts it in PATH_INFO.
    fix_root = '\n        "fix-root-scriptname" => "enable",' if settings.prefix == "/" else ""
    block = Template(_LIGHTTPD_SCGI).substitute(prefix=settings.prefix, backend=backend,
                                                fix_root=fix_root)
    return {"scgi_server": _lighttpd_conditions(settings, block)}


def _lighttpd_conditions(settings: Settings, block: str) -> str:
    """``block`` inside lighttpd's conditions on the socket and the host, when given.

    ``$SERVER["socket"]`` also makes lighttpd listen on that socket; ``$HTTP["host"]`` is
    the request's host name, in lowercase and without its port.
    """
    conditions, said = [], []
    if settings.listen is not None:
        listen = settings.listen
        socket = f":{listen.port}" if listen.host is None else str(listen)
        conditions.append(f'$SERVER["socket"] == "{socket}"')
        said.append(f"on {socket} (lighttpd listens there too)")
    if settings.server_name is not None:
        conditions.append(f'$HTTP["host"] == "{settings.server_name}"')
        said.append(f"for the host {settings.server_name}")
    if not conditions:
        return block
    text = block
    for condition in reversed(conditions):
        text = condition + " {\n" + textwrap.indent(text, "    ") + "\n}"
    return f"# The app answers only {' and '.join(said)}.\n{text}"


_BUILDERS = {"nginx": _nginx, "apache": _apache, "lighttpd": _lighttpd}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", choices=FRONT_ENDS, help="the front end")
    parser.add_argument("--bind", action="append", metavar="ADDRESS",
                        help="where scgikit serve listens (default 127.0.0.1:4000): IPV4:PORT, "
                        "[IPV6]:PORT or an absolute unix socket path; repeated, one backend "
                        "per host behind an nginx upstream with failover")
    parser.add_argument("--prefix", default="/", help="mount the app under this path "
                        "(default /)")
    parser.add_argument("--server-name", metavar="NAME",
                        help="the front end's server name, a DNS name (nginx and Apache: "
                        "default localhost; lighttpd: any host unless given)")
    parser.add_argument("--listen", metavar="[HOST:]PORT",
                        help="the front end's HTTP port, or IPV4:PORT or [IPV6]:PORT (nginx "
                        "and Apache: default 80; lighttpd: its server.port unless given)")
    parser.add_argument("--fail-timeout", metavar="SECONDS",
                        help=f"nginx upstream: how long a failed backend is left out before it "
                        f"is tried again, 1..{values.MAX_FAIL_TIMEOUT} (default {FAIL_TIMEOUT})")
    parser.add_argument("--down", action="append", default=[], metavar="ADDRESS",
                        help="nginx upstream: mark this --bind backend down, so that nginx "
                        "sends it nothing new while it restarts (repeatable)")


def run(args: argparse.Namespace) -> int:
    try:
        text = render(args.server, args.bind or [DEFAULT_BIND], args.prefix,
                      args.server_name, args.listen, args.fail_timeout, args.down)
    except FrontendError as exc:
        print(f"scgikit config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
