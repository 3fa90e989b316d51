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
  scgikit config nginx --bind 127.0.0.1:4001 --bind 127.0.0.1:4002   an upstream of two
  scgikit config apache --server-name example.org
  scgikit config lighttpd --prefix /app --listen 8080
"""


class FrontendError(ValueError):
    """The configuration asked for cannot be written (unknown server, bad address...)."""


def render(server: str, bind: Sequence[str] = ("127.0.0.1:4000",), prefix: str = "/",
           server_name: str = "localhost", listen: int | str = 80) -> str:
    """The configuration snippet for ``server`` in front of the scgikit server at ``bind``."""
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
    command = "scgikit config " + " ".join(shlex.quote(a) for a in _argv(
        server, bind, prefix, server_name, listen))
    serve = "scgikit serve APP " + " ".join(f"--bind {a}" for a in addresses)
    if prefix != "/" and server in ("nginx", "apache"):
        serve += f" --script-name {prefix}"
    values = {
        "command": command, "serve": serve, "server_name": server_name,
        "listen": str(listen), "prefix": prefix,
    }
    values.update(_BUILDERS[server](addresses, prefix))
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


def _nginx_target(address: Address) -> str:
    return f"unix:{address.path}" if address.path is not None else str(address)


def _nginx(addresses: list[Address], prefix: str) -> dict[str, str]:
    if len(addresses) > 1:
        servers = "".join(f"    server {_nginx_target(a)};\n" for a in addresses)
        upstream, target = f"upstream scgikit_app {{\n{servers}}}\n", "scgikit_app"
    else:
        upstream, target = "\0", _nginx_target(addresses[0])
    redirect = ""
    if prefix != "/":
        redirect = f"    location = {prefix} {{\n        return 301 {prefix}/;\n    }}\n\n"
    return {"upstream_block": upstream, "pass": target, "prefix_redirect": redirect,
            "location": prefix if prefix == "/" else prefix + "/"}


def _apache(addresses: list[Address], prefix: str) -> dict[str, str]:
    address = addresses[0]
    if address.path is not None:
        url = f"unix:{address.path}|scgi://localhost{prefix if prefix != '/' else '/'}"
    else:
        url = f"scgi://{address}{prefix if prefix != '/' else '/'}"
    return {"url": url}


def _lighttpd(addresses: list[Address], prefix: str) -> dict[str, str]:
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
          listen: int | str) -> list[str]:
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
    return argv


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", choices=FRONT_ENDS, help="the front end")
    parser.add_argument("--bind", action="append", metavar="ADDRESS",
                        help="where scgikit serve listens (repeatable; default 127.0.0.1:4000)")
    parser.add_argument("--prefix", default="/", help="mount the app under this path "
                        "(default /)")
    parser.add_argument("--server-name", default="localhost",
                        help="the front end's server name (default %(default)s)")
    parser.add_argument("--listen", default="80", help="the front end's HTTP port (default 80)")


def run(args: argparse.Namespace) -> int:
    try:
        text = render(args.server, args.bind or ["127.0.0.1:4000"], args.prefix,
                      args.server_name, args.listen)
    except FrontendError as exc:
        print(f"scgikit config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
