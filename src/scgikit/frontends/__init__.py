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
from collections.abc import Sequence
from importlib import resources
from string import Template

from ..addresses import Address, AddressError, parse_address

__all__ = ["FRONT_ENDS", "FrontendError", "render"]

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


class FrontendError(ValueError):
    """The configuration asked for cannot be written (unknown server, bad address...)."""


#: How long nginx leaves out a backend that failed, before it tries it again (nginx's default).
FAIL_TIMEOUT = 10


def render(server: str, bind: Sequence[str] = ("127.0.0.1:4000",), prefix: str = "/",
           server_name: str = "localhost", listen: int | str = 80,
           fail_timeout: int = FAIL_TIMEOUT, down: Sequence[str] = ()) -> str:
    """The configuration snippet for ``server`` in front of the scgikit server(s) at ``bind``.

    Several ``bind`` addresses (nginx only) are several backends, one per host: an
    ``upstream`` block with failover, and one ``scgikit serve`` line per backend in the hint.
    ``down`` names backends nginx sends nothing new to (marked ``down``), to restart them.
    """
    if server not in FRONT_ENDS:
        raise FrontendError(f"unknown front end {server!r}: choose one of {', '.join(FRONT_ENDS)}")
    prefix = _prefix(prefix)
    try:
        addresses = [parse_address(text) for text in bind or ("127.0.0.1:4000",)]
    except AddressError as exc:
        raise FrontendError(str(exc)) from None
    if any(a.fd is not None for a in addresses):
        raise FrontendError("a front end needs a host:port or unix: address, not fd://")
    if len(addresses) > 1 and server != "nginx":
        raise FrontendError(f"several --bind addresses: only the nginx config balances them; "
                            f"run one {server} ProxyPass/scgi.server entry per backend")
    if fail_timeout != FAIL_TIMEOUT and len(addresses) < 2:
        raise FrontendError("--fail-timeout is for an nginx upstream of several --bind backends")
    if not 1 <= fail_timeout <= 3600:
        raise FrontendError(f"--fail-timeout must be 1..3600 seconds, not {fail_timeout}")
    drained = _down(addresses, down)
    command = "scgikit config " + " ".join(shlex.quote(a) for a in _argv(
        server, bind, prefix, server_name, listen, fail_timeout, down))
    script_name = f" --script-name {prefix}" if prefix != "/" and server != "lighttpd" else ""
    values = {
        "command": command, "start": _start_hint(addresses, script_name),
        "serve": f"scgikit serve APP --bind {addresses[0]}{script_name}",
        "server_name": server_name, "listen": str(listen), "prefix": prefix,
    }
    values.update(_BUILDERS[server](addresses, prefix, fail_timeout, drained))
    text = Template(resources.files(__package__).joinpath(f"{server}.conf").read_text())
    lines = text.substitute(values).splitlines()
    return "\n".join(line for line in lines if line != "\0") + "\n"


def _prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        raise FrontendError(f"--prefix must start with '/': {prefix!r}")
    if prefix != "/":
        prefix = prefix.rstrip("/")
    if any(c in prefix for c in " \t\"';{}"):
        raise FrontendError(f"--prefix {prefix!r} holds characters a config file would misread")
    return prefix


def _down(addresses: list[Address], down: Sequence[str]) -> set[Address]:
    """The backends named by ``--down``: each must be one of ``--bind``, and one must stay up."""
    drained = set()
    for text in down:
        try:
            address = parse_address(text)
        except AddressError as exc:
            raise FrontendError(f"--down: {exc}") from None
        if address not in addresses or len(addresses) < 2:
            raise FrontendError(f"--down {text}: not one of the --bind backends of an upstream")
        drained.add(address)
    if drained and len(drained) == len(addresses):
        raise FrontendError("--down names every backend: nginx would have none to send to")
    return drained


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


def _nginx(addresses: list[Address], prefix: str, fail_timeout: int,
           down: set[Address]) -> dict[str, str]:
    options = ""
    if len(addresses) > 1:
        limits = f"max_fails=1 fail_timeout={fail_timeout}s"
        servers = "".join(f"    server {_nginx_target(a)} {limits}{' down' * (a in down)};\n"
                          for a in addresses)
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


def _apache(addresses: list[Address], prefix: str, fail_timeout: int,
            down: set[Address]) -> dict[str, str]:
    address = addresses[0]
    backend = (f"scgi://{address}" if address.path is None
               else f"unix:{address.path}|scgi://localhost")
    return {"url": backend + prefix}


def _lighttpd(addresses: list[Address], prefix: str, fail_timeout: int,
              down: set[Address]) -> dict[str, str]:
    address = addresses[0]
    if address.path is not None:
        backend = f'        "socket" => "{address.path}",'
    else:
        backend = f'        "host" => "{address.host}",\n        "port" => {address.port},'
    # At "/", lighttpd would put the whole path in SCRIPT_NAME; this puts it in PATH_INFO.
    fix_root = '\n        "fix-root-scriptname" => "enable",' if prefix == "/" else ""
    return {"backend": backend, "fix_root": fix_root}


_BUILDERS = {"nginx": _nginx, "apache": _apache, "lighttpd": _lighttpd}


def _argv(server: str, bind: Sequence[str], prefix: str, server_name: str,
          listen: int | str, fail_timeout: int, down: Sequence[str]) -> list[str]:
    argv = [server]
    if list(bind) != ["127.0.0.1:4000"]:
        for address in bind:
            argv += ["--bind", address]
    if prefix != "/":
        argv += ["--prefix", prefix]
    if server_name != "localhost":
        argv += ["--server-name", server_name]
    if str(listen) != "80":
        argv += ["--listen", str(listen)]
    if fail_timeout != FAIL_TIMEOUT:
        argv += ["--fail-timeout", str(fail_timeout)]
    for address in down:
        argv += ["--down", address]
    return argv


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", choices=FRONT_ENDS, help="the front end")
    parser.add_argument("--bind", action="append", metavar="ADDRESS",
                        help="where scgikit serve listens (default 127.0.0.1:4000); repeated, "
                        "one backend per host behind an nginx upstream with failover")
    parser.add_argument("--prefix", default="/", help="mount the app under this path "
                        "(default /)")
    parser.add_argument("--server-name", default="localhost",
                        help="the front end's server name (default %(default)s)")
    parser.add_argument("--listen", default="80", help="the front end's HTTP port (default 80)")
    parser.add_argument("--fail-timeout", type=int, default=FAIL_TIMEOUT, metavar="SECONDS",
                        help="nginx upstream: how long a failed backend is left out before it "
                        "is tried again (default %(default)s)")
    parser.add_argument("--down", action="append", default=[], metavar="ADDRESS",
                        help="nginx upstream: mark this --bind backend down, so that nginx "
                        "sends it nothing new while it restarts (repeatable)")


def run(args: argparse.Namespace) -> int:
    try:
        text = render(args.server, args.bind or ["127.0.0.1:4000"], args.prefix,
                      args.server_name, args.listen, args.fail_timeout, args.down)
    except FrontendError as exc:
        print(f"scgikit config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
