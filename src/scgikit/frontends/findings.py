"""What ``scgikit check --front-end`` compares, and what it finds: the rules all front ends share.

``Server`` is the part of a server's settings a front end must agree with (built from
its ``Config`` by the check command; this package knows nothing of the server's own
modules).  A ``Finding`` is one mismatch: where (a line of the front end's file), what,
and the fix in one line; an error when it loses or breaks requests, else a warning.

Where the front end sends requests is compared here for all three (``address_findings``):
an address the server binds, the same socket file, the same port on a host that reaches
it (``localhost`` is 127.0.0.1 and ::1; a server on 0.0.0.0 is reached at any IPv4
address of the machine, one on ``::`` at any IPv6 address).  A host name other than
localhost is not looked up: nothing is said of it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..addresses import Address

__all__ = ["Finding", "Server", "Target", "address_findings", "ceil_seconds", "dedupe",
           "seconds_text"]


@dataclass(frozen=True)
class Server:
    """The server's settings a front end must agree with.

    ``addresses`` are those it binds, unix paths made absolute; None when they are not
    known before it runs (systemd's sockets, an inherited ``fd://``).  ``timeout`` is
    ``--timeout`` (0: never), ``max_body_size`` ``--max-body-size`` (None: no limit).
    """

    addresses: tuple[Address, ...] | None
    timeout: float = 30.0
    max_body_size: int | None = None
    front_end_buffering: bool = False


@dataclass(frozen=True)
class Finding:
    """A mismatch at ``line`` of the front end's file: ``what``, and ``fix`` in one line."""

    error: bool
    line: int
    what: str
    fix: str


@dataclass(frozen=True)
class Target:
    """An address the front end sends requests to, as written at ``line``."""

    address: Address
    line: int
    written: str
    down: bool = False  # an nginx upstream server marked down: sent nothing new


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Each finding once (an upstream or a default met by several locations), by line."""
    return sorted(dict.fromkeys(findings), key=lambda finding: finding.line)


def seconds_text(seconds: float) -> str:
    return f"{seconds:g}s"


def ceil_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


# --- where requests go -------------------------------------------------------------------

def address_findings(front: str, targets: Sequence[Target], line: int, server: Server,
                     fix: Callable[[Address], str]) -> list[Finding]:
    """The findings of one place that passes requests on (at ``line``) to ``targets``.

    None of them bound by the server: an error (every request there fails).  Some bound,
    others not: each other one on this machine (a unix socket, a loopback address) is a
    warning, since the front end tries it and fails over; one on another host is taken
    for that host's server.
    """
    if server.addresses is None:
        return []
    live = [target for target in targets if not target.down]
    verdicts = [(target, _binds(server.addresses, target.address)) for target in live]
    if not verdicts or any(found is None for _, found in verdicts):
        return []
    listening = ", ".join(str(a) for a in server.addresses)
    if not any(found for _, found in verdicts):
        written = " and ".join(target.written for target in live)
        best = _best(server.addresses, live[0].address)
        return [Finding(True, line, f"{front} sends requests to {written}, where the server "
                        f"does not listen (it listens at {listening}): every request there "
                        f"fails", fix(best))]
    return [Finding(False, target.line, f"{target.written}: the server does not listen there "
                    f"(it listens at {listening}): {front} tries it and fails over",
                    f"remove {target.written}, or start a server there")
            for target, found in verdicts
            if not found and (target.address.path is not None or _local(target.address))]


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _binds(bound: Sequence[Address], target: Address) -> bool | None:
    """Whether one of the ``bound`` addresses is ``target``; None when that cannot be told
    (a host name, an fd:// the server inherits)."""
    if any(address.fd is not None for address in bound):
        return None
    if target.path is not None:
        return any(address.path == target.path for address in bound)
    host = target.host or ""
    if host not in _LOOPBACK and _ip(host) is None:
        return None
    return any(address.port == target.port and _host_reaches(address.host or "", host)
               for address in bound if address.path is None)


def _host_reaches(bound: str, host: str) -> bool:
    if bound == host or ("localhost" in (bound, host) and {bound, host} <= _LOOPBACK):
        return True
    ip = _ip(host)
    version = 4 if host == "localhost" else (ip.version if ip is not None else 0)
    return (bound == "0.0.0.0" and version == 4) or (bound == "::" and version == 6)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _local(address: Address) -> bool:
    ip = _ip(address.host or "")
    return address.host == "localhost" or (ip is not None and ip.is_loopback)


def _best(bound: Sequence[Address], target: Address) -> Address:
    """The address of the server to send to instead of ``target``: one of the same kind
    (a socket file, TCP) if any, a wildcard written as its loopback address."""
    same = [a for a in bound if (a.path is None) == (target.path is None) and a.fd is None]
    address = (same or [a for a in bound if a.fd is None] or list(bound))[0]
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host or "")
    return Address(host=loopback, port=address.port) if loopback else address
