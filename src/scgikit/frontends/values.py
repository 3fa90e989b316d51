"""The values ``scgikit config`` writes into a front end's configuration, each checked once.

A value lands inside nginx's, Apache's or lighttpd's configuration grammar, where a space, a
quote, ``;``, a brace, ``#``, ``$`` or a line end can end it and start something else: a
directive, a block, a comment, a variable.  Rather than quote one value three ways, each
option takes only a form that reads the same, unquoted or in plain double quotes, in all
three grammars; anything else is refused with the option, the value and what is allowed
(docs/security.md, "Generated configurations").

    --bind, --down   IPV4:PORT or [IPV6]:PORT (a port 1..65535), or an absolute unix
                     socket path of letters, digits and / . _ - + @ , = ~
    --prefix         / or /SEGMENT/..., segments of letters, digits and - . _ ~
    --server-name    a DNS name: labels of letters, digits and '-', joined by '.'
    --listen         PORT, IPV4:PORT or [IPV6]:PORT
    --fail-timeout   1..3600 seconds
"""

from __future__ import annotations

import ipaddress
import re

from ..addresses import Address, AddressError, parse_address

__all__ = ["FrontendError", "Listen", "backend", "fail_timeout", "listen", "prefix",
           "server_name"]


class FrontendError(ValueError):
    """The operator asked for a configuration that cannot be written: ``option`` ``value``.

    ``str()`` is the one line the command prints after ``scgikit config:``:
    the option, the value as ``repr`` and what is wrong with it, then what is allowed.
    """

    def __init__(self, option: str, value: object, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(f"{option} {value!r}: {problem}")


#: The longest unix socket path each front end reads: sun_path holds 108 bytes with the NUL
#: (nginx); lighttpd keeps 2 more, Apache's worker record 96 (PROXY_WORKER_MAX_NAME_SIZE).
MAX_SOCKET_PATH = {"nginx": 107, "lighttpd": 105, "apache": 95}
_TITLES = {"nginx": "nginx", "lighttpd": "lighttpd", "apache": "Apache"}
MAX_PREFIX = 1024
MAX_FAIL_TIMEOUT = 3600

_PATH_CHARS = re.compile(r"[A-Za-z0-9/._+@,=~-]", re.ASCII)
_PATH_ALLOWED = "letters, digits and / . _ - + @ , = ~"
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._~-]", re.ASCII)
_SEGMENT_ALLOWED = "letters, digits and - . _ ~"
_PREFIX_CHARS = re.compile(r"[A-Za-z0-9/._~-]", re.ASCII)
_NAME_CHARS = re.compile(r"[a-z0-9.-]", re.ASCII)
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_NAME_ALLOWED = ("a DNS name: labels of 1 to 63 letters, digits and '-' (not first or last), "
                 "joined by '.', at most 253 characters")
_BACKEND_FORMS = ("IPV4:PORT, [IPV6]:PORT (a port from 1 to 65535), or an absolute unix "
                  "socket path as /path or unix:/path")
_PREFIX_ALLOWED = (f"'/', or '/' and segments of {_SEGMENT_ALLOWED} joined by '/', "
                   f"at most {MAX_PREFIX} characters")
_LISTEN_ALLOWED = "PORT, IPV4:PORT or [IPV6]:PORT, with a port from 1 to 65535"


def _stray(text: str, allowed: re.Pattern[str]) -> str | None:
    """The first character of ``text`` that ``allowed`` does not match, or None."""
    return next((ch for ch in text if not allowed.fullmatch(ch)), None)


def _port(option: str, value: str, text: str, allowed: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        what = "not a port" if text == value else f"the port {text!r} is not a number"
        raise FrontendError(option, value, f"{what} from 1 to 65535; allowed: {allowed}")
    return int(text)


def _ip(option: str, value: str, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host``, an IPv4 or IPv6 literal of one host (no %zone: no front end reads one)."""
    try:
        ip = ipaddress.ip_address(host if "%" not in host else "%")
    except ValueError:
        raise FrontendError(option, value, f"{host!r} is not an IPv4 or IPv6 address "
                            f"(a front end's address is written as IPV4:PORT or "
                            f"[IPV6]:PORT)") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise FrontendError(option, value, f"{host!r} is an IPv4 address in IPv6 form, on "
                            f"which nginx cannot listen; write it as {ip.ipv4_mapped}")
    if ip.is_multicast or (ip.version == 4 and ip.is_reserved):
        raise FrontendError(option, value, f"{host!r} is a multicast, broadcast or reserved "
                            f"address, which no TCP socket listens on; give one host's address")
    return ip


# --- --bind and --down: where the front end reaches the backend ---------------------------

def backend(option: str, value: str, server: str) -> Address:
    """A backend address for ``--bind``/``--down``: an IP address and port, or a unix path
    (of at most the length ``server`` reads)."""
    try:
        address = parse_address(value)
    except (AddressError, ValueError):  # ValueError: int() refuses some str.isdigit() text
        raise FrontendError(option, value, f"not an address; allowed: {_BACKEND_FORMS}") from None
    if address.fd is not None:
        raise FrontendError(option, value, "a front end connects to a host:port or a unix "
                            "socket, not an inherited fd://")
    if address.path is not None:
        return Address(path=_socket_path(option, value, address.path, server))
    return _tcp_backend(option, value, address)


def _socket_path(option: str, value: str, path: str, server: str) -> str:
    if not path.startswith("/"):
        raise FrontendError(option, value, "a relative socket path would be read from the "
                            "front end's own folder; allowed: an absolute path")
    if path.endswith("/"):
        raise FrontendError(option, value, "a socket path names a file, not a folder ending "
                            "in '/'")
    stray = _stray(path, _PATH_CHARS)
    if stray is not None:
        raise FrontendError(option, value, f"{stray!r} cannot appear in a socket path "
                            f"written into a front end's configuration; allowed: "
                            f"{_PATH_ALLOWED}")
    if len(path) > MAX_SOCKET_PATH[server]:
        raise FrontendError(option, value, f"{_TITLES[server]} reads a unix socket path of at "
                            f"most {MAX_SOCKET_PATH[server]} bytes, this one is {len(path)}")
    return path


def _tcp_backend(option: str, value: str, address: Address) -> Address:
    assert address.host is not None and address.port is not None
    ip = _ip(option, value, address.host)
    if ip.is_unspecified:
        raise FrontendError(option, value, "a front end connects to the backend: give the "
                            "address it is reached at (such as 127.0.0.1), not every interface")
    if address.port == 0:
        raise FrontendError(option, value, f"the port 0 is not a number from 1 to 65535; "
                            f"allowed: {_BACKEND_FORMS}")
    return Address(host=str(ip), port=address.port)


# --- the front end's own side: --prefix, --server-name, --listen --------------------------

def prefix(value: str) -> str:
    """``/`` or ``/a/b``: the path the app is mounted at, its trailing '/' taken off."""
    path = value.rstrip("/") or "/"
    stray = _stray(path, _PREFIX_CHARS)
    if not value.startswith("/"):
        problem = "must start with '/'"
    elif stray is not None:
        problem = f"{stray!r} cannot appear in a prefix"
    elif path != "/" and any(part in ("", ".", "..") for part in path[1:].split("/")):
        problem = ("an empty, '.' or '..' segment (a front end normalises a request's path, "
                   "which would never match it)")
    elif len(path) > MAX_PREFIX:
        problem = f"{len(path)} characters"
    else:
        return path
    raise FrontendError("--prefix", value, f"{problem}; allowed: {_PREFIX_ALLOWED}")


def server_name(value: str) -> str:
    """A DNS name, in lowercase: all three front ends compare host names without case."""
    name = value.lower() if value.isascii() else value
    if len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split(".")):
        return name
    stray = _stray(name, _NAME_CHARS)
    problem = (f"{stray!r} cannot appear in a server name" if stray is not None
               else "not a DNS name")
    raise FrontendError("--server-name", value, f"{problem}; allowed: {_NAME_ALLOWED}")


class Listen:
    """Where the front end listens: a port, and an IP address or None for every address."""

    def __init__(self, port: int, host: str | None = None) -> None:
        self.port, self.host = port, host

    def __str__(self) -> str:
        if self.host is None:
            return str(self.port)
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def listen(value: str) -> Listen:
    """``PORT``, ``IPV4:PORT`` or ``[IPV6]:PORT``."""
    if ":" not in value:
        return Listen(_port("--listen", value, value, _LISTEN_ALLOWED))
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        version = 6
    else:
        host, sep, port = value.rpartition(":")
        version = 4
    ip = _ip("--listen", value, host) if sep else None
    if ip is None or ip.version != version:
        raise FrontendError("--listen", value, f"not a listening address; allowed: "
                            f"{_LISTEN_ALLOWED} (an IPv6 address in brackets)")
    return Listen(_port("--listen", value, port, _LISTEN_ALLOWED), str(ip))


def fail_timeout(value: int | str) -> int:
    """nginx's ``fail_timeout``: whole seconds, 1..3600."""
    text = str(value)
    if not re.fullmatch(r"[1-9][0-9]{0,3}", text, re.ASCII) or int(text) > MAX_FAIL_TIMEOUT:
        raise FrontendError("--fail-timeout", value, f"not a whole number of seconds from 1 to "
                            f"{MAX_FAIL_TIMEOUT}")
    return int(text)
