"""``--allow-from``: which TCP peers a worker serves, decided before a byte is read.

How it works.  Each rule (``10.0.0.1``, ``10.0.0.0/8``, ``::1``, ``fd00::/8``) is
parsed once, by :mod:`ipaddress`, into a network number and a prefix length.
Rules are grouped by address family and prefix length: for each prefix length
the table holds the set of network numbers shifted right past the host bits.
A peer is then checked with one C call that turns its address text into bytes
(``inet_pton``: no name lookup, no I/O), and for each distinct prefix length one
shift and one set lookup, however many rules share that length.

IPv4 rules also match IPv4-mapped IPv6 peers (``::ffff:10.0.0.1``), which is how
a dual-stack IPv6 listener reports IPv4 clients; likewise an IPv6 rule inside
``::ffff:0:0/96`` also matches the IPv4 peers it maps.  Unix-socket peers (a
``str`` or ``bytes`` path, usually empty) are always permitted: the socket
file's owner and mode guard those.  Anything else, such as a peer address that
does not parse, is refused: the list fails closed.

The module does no I/O and imports nothing of scgikit's; ``scgikit.config`` builds one
to validate the option, and each worker builds its own to check every accepted TCP
connection.
"""

from __future__ import annotations

import ipaddress
from _socket import AF_INET, AF_INET6, inet_pton
from collections.abc import Iterable, Sequence

__all__ = ["AllowList", "AllowListError"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowListError(ValueError):
    """An entry of the list is not a network; the message names it (config.py adds the
    option's name: ``--allow-from: ...``)."""

#: For each distinct prefix length: (how far to shift a peer's address right,
#: the network numbers shifted as far).  Shortest prefixes (widest ranges) first.
Table = tuple[tuple[int, frozenset[int]], ...]

_MAPPED_IPV4 = ipaddress.IPv6Network("::ffff:0:0/96")
_MAPPED_PREFIX = 0xFFFF  # the bits above the low 32 of an IPv4-mapped IPv6 address


class AllowList:
    """The networks of ``--allow-from``; ``permits(peer)`` says whether a peer may connect.

    An empty list permits no TCP peer at all (unix peers are still permitted);
    the server builds none when the option is not given.
    """

    __slots__ = ("networks", "_ipv4", "_ipv6")

    def __init__(self, networks: Sequence[str]) -> None:
        if isinstance(networks, (str, bytes)):
            raise AllowListError(f"expected a list of networks, not the single string {networks!r}")
        self.networks: tuple[Network, ...] = tuple(_parse_network(text) for text in networks)
        ipv6 = [net for net in self.networks if isinstance(net, ipaddress.IPv6Network)]
        ipv4 = [net for net in self.networks if isinstance(net, ipaddress.IPv4Network)]
        ipv4 += [mapped for net in ipv6 if (mapped := _unmapped(net)) is not None]
        self._ipv4 = _table(ipv4, 32)
        self._ipv6 = _table(ipv6, 128)

    def permits(self, peer: object) -> bool:
        """Whether ``peer`` (the address ``socket.accept()`` returned) may be served."""
        if not isinstance(peer, tuple):
            return isinstance(peer, (str, bytes)) or not peer  # a unix socket's peer
        host = peer[0] if peer else None
        if not isinstance(host, str):
            return False
        try:
            if ":" in host:
                return self._permits_ipv6(_number(AF_INET6, host.partition("%")[0]))
            return _member(self._ipv4, _number(AF_INET, host))
        except (OSError, ValueError):  # not an address: refuse
            return False

    def _permits_ipv6(self, address: int) -> bool:
        if _member(self._ipv6, address):
            return True
        return address >> 32 == _MAPPED_PREFIX and _member(self._ipv4, address & 0xFFFFFFFF)

    def __repr__(self) -> str:
        return f"AllowList({[str(net) for net in self.networks]!r})"


def _parse_network(text: str) -> Network:
    """One rule: an address (a network of one) or a CIDR range; AllowListError names a bad one."""
    entry = text.strip() if isinstance(text, str) else ""
    if "%" in entry:
        raise AllowListError(f"{text!r}: a zone index (%...) cannot be matched; "
                          "give the address without it")
    if "," in entry:
        raise AllowListError(f"{text!r}: give one network per entry, not a list")
    try:
        return ipaddress.ip_network(entry)
    except ValueError:
        pass
    try:
        wide = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise AllowListError(f"{text!r} is not an IP address or a CIDR range "
                          "such as 10.0.0.0/8 or fd00::/8") from None
    address = entry.partition("/")[0]
    raise AllowListError(f"{text!r} has host bits set: write {wide} for the whole range, "
                      f"or {address} for that one address")


def _unmapped(network: ipaddress.IPv6Network) -> ipaddress.IPv4Network | None:
    """The IPv4 range an IPv6 rule inside ``::ffff:0:0/96`` maps, else None."""
    if not network.subnet_of(_MAPPED_IPV4):
        return None
    address = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
    return ipaddress.IPv4Network((address, network.prefixlen - 96))


def _table(networks: Iterable[Network], bits: int) -> Table:
    by_length: dict[int, set[int]] = {}
    for net in networks:
        shift = bits - net.prefixlen
        by_length.setdefault(shift, set()).add(int(net.network_address) >> shift)
    return tuple((shift, frozenset(numbers))
                 for shift, numbers in sorted(by_length.items(), reverse=True))


def _number(family: int, host: str) -> int:
    return int.from_bytes(inet_pton(family, host), "big")


def _member(table: Table, address: int) -> bool:
    for shift, numbers in table:
        if address >> shift in numbers:
            return True
    return False
