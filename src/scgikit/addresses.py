"""Addresses as operators write them, parsed once for the server and the client.

    127.0.0.1:4000    host:port (a bare host name works too: localhost:4000)
    [::1]:4000        IPv6 literal in brackets
    :4000             loopback, port 4000 (never all interfaces by accident)
    unix:/run/app.sock
    /run/app.sock     a path is a unix socket too, as uWSGI takes it: anything starting
    ./app.sock        with '/', './' or '../' (relative to the server's --chdir)
    fd://3            an inherited, already listening descriptor (server only)
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["ADDRESS_FORMS", "Address", "AddressError", "check_host", "check_unix_path",
           "parse_address", "DEFAULT_PORT"]

DEFAULT_PORT = 4000
#: The forms ``parse_address`` takes, for error messages that say what was expected.
ADDRESS_FORMS = "HOST:PORT, [IPv6]:PORT, a unix socket as /path, ./path or unix:PATH, or fd://N"
_PATH_PREFIXES = ("/", "./", "../")
#: The longest unix socket path the kernel takes, in bytes (Linux's sun_path).
MAX_PATH_BYTES = 108
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_ZONE = re.compile(r"[0-9A-Za-z_.-]+")


class AddressError(ValueError):
    """An address string that cannot be understood; the message says why."""


@dataclass(frozen=True)
class Address:
    """Where to listen or connect: exactly one of (host, port), path or fd is set."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    fd: int | None = None

    @property
    def family(self) -> socket.AddressFamily:
        if self.path is not None:
            return socket.AF_UNIX
        if self.host is not None and ":" in self.host:
            return socket.AF_INET6
        return socket.AF_INET

    @property
    def sockaddr(self) -> str | tuple[str, int]:
        """The address in the form ``socket.connect``/``bind`` take."""
        if self.path is not None:
            return self.path
        if self.host is None or self.port is None:
            raise AddressError(f"{self} has no socket address")
        return (self.host, self.port)

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        if self.host is not None and ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


AddressLike = str | Address | tuple[Any, ...]


def parse_address(value: AddressLike, default_port: int = DEFAULT_PORT) -> Address:
    """Parse ``value`` (a string as above, an ``Address``, or a socket-style tuple)."""
    if isinstance(value, Address):
        return value
    if isinstance(value, tuple):
        if len(value) < 2:
            raise AddressError(f"address tuple {value!r} needs a host and a port")
        return Address(host=str(value[0]), port=_port(str(value[1]), repr(value)))
    if not isinstance(value, str) or not value:
        raise AddressError(f"address must be a non-empty string, not {value!r}")
    if value.startswith("unix:"):
        path = value[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise AddressError(f"{value!r}: unix socket path is empty")
        return Address(path=check_unix_path(path, value))
    if value.startswith(_PATH_PREFIXES):
        return Address(path=check_unix_path(value))
    if value.startswith("fd://"):
        digits = value[5:]
        if not (digits.isascii() and digits.isdigit()) or int(digits) > 2**31 - 1:
            raise AddressError(f"{value!r}: fd:// needs a descriptor number")
        return Address(fd=int(digits))
    if "://" in value:
        raise AddressError(f"{value!r}: an SCGI address is HOST:PORT or a unix path, not a URL")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not host:
            raise AddressError(f"{value!r}: IPv6 address is missing its closing ']'")
        check_host(f"[{host}]", value)
        if not rest:
            return Address(host=host, port=default_port)
        if not rest.startswith(":"):
            raise AddressError(f"{value!r}: expected ':PORT' after ']'")
        return Address(host=host, port=_port(rest[1:], value))
    if value.count(":") > 1:
        raise AddressError(f"{value!r}: write IPv6 addresses in brackets, as [::1]:4000")
    host, sep, port = value.rpartition(":")
    if not sep:
        if value.isdigit():
            return Address(host="127.0.0.1", port=_port(value, value))
        return Address(host=check_host(value), port=default_port)
    return Address(host=check_host(host, value) if host else "127.0.0.1",
                   port=_port(port, value))


def check_unix_path(path: str, whole: str | None = None) -> str:
    """``path`` if the kernel can bind or connect to it (no NUL, at most 108 bytes), else
    an ``AddressError`` showing ``whole`` (the address it came from)."""
    shown = repr(path if whole is None else whole)
    if not path:
        raise AddressError(f"{shown}: unix socket path is empty")
    if "\0" in path:
        raise AddressError(f"{shown}: a unix socket path cannot hold a NUL byte")
    try:
        size = len(os.fsencode(path))
    except UnicodeEncodeError:  # a lone surrogate no bytes decode to
        raise AddressError(f"{shown}: not a file name the system can encode") from None
    if size > MAX_PATH_BYTES:
        raise AddressError(f"{shown}: the unix socket path is {size} bytes, and the kernel "
                           f"takes at most {MAX_PATH_BYTES}: choose a shorter one")
    return path


def check_host(host: str, whole: str | None = None) -> str:
    """``host`` without its brackets if it is a host name (letters, digits, '-', '_',
    '.'), an IPv4 address or an IPv6 address (bare or in brackets, with a %zone), else an
    ``AddressError`` showing ``whole``."""
    shown = repr(host if whole is None else whole)
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    if ":" in bare:
        address, percent, zone = bare.partition("%")
        try:
            socket.inet_pton(socket.AF_INET6, address)
        except (OSError, ValueError):
            raise AddressError(f"{shown}: {bare!r} is not an IPv6 address") from None
        if percent and not _ZONE.fullmatch(zone):
            raise AddressError(f"{shown}: {zone!r} is not an IPv6 zone") from None
        return bare
    if bracketed or not (bare.isascii() and len(bare) <= 253 and _HOST_NAME.fullmatch(bare)):
        raise AddressError(f"{shown}: {bare!r} is not a host name or an IP address (a unix "
                           "socket path starts with /, ./ or ../, or unix:)")
    return bare


def _port(text: str, whole: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 0 <= int(text) <= 65535:
        raise AddressError(f"{whole!r}: port must be a number from 0 to 65535")
    return int(text)
