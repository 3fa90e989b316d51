"""lighttpd's configuration against the server's settings: the rules of ``check --front-end``.

Each backend of ``scgi.server`` (``"socket"``, or ``"host"`` and ``"port"``), its
``"read-timeout"`` and ``"write-timeout"`` (none by default), and
``server.max-request-size`` (in KiB; 0 or unset, no limit).  Pure: the directives come
in, the findings go out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..addresses import Address
from .findings import Finding, Server, Target, address_findings, ceil_seconds, dedupe
from .readers import Directive, LighttpdArray, walk

__all__ = ["inspect"]

def inspect(directives: tuple[Directive, ...], server: Server) -> list[Finding]:
    findings: list[Finding] = []
    settings = [d for d, _ in walk(directives) if d.value is not None]
    for d in settings:
        if d.name == "scgi.server" and isinstance(d.value, LighttpdArray):
            for prefix, hosts in d.value.items:
                found = list(_lighttpd_hosts(hosts))
                targets = [target for host in found for target in _lighttpd_target(host)]
                findings += address_findings("lighttpd", targets, d.line, server,
                                             _lighttpd_fix(prefix))
                findings += [f for host in found for f in _lighttpd_timeouts(host, server)]
            findings += _lighttpd_body(d, settings, server)
    return dedupe(findings)


def _lighttpd_hosts(hosts: object) -> Iterator[LighttpdArray]:
    """The backends of one prefix: ``(( ... ), ...)`` or ``( "name" => ( ... ), ...)``."""
    if isinstance(hosts, LighttpdArray):
        for _, host in hosts.items:
            if isinstance(host, LighttpdArray):
                yield host


def _lighttpd_target(host: LighttpdArray) -> list[Target]:
    socket, name, port = host.get("socket"), host.get("host"), host.get("port")
    if isinstance(socket, str):
        return [Target(Address(path=socket), host.line, f'"socket" => "{socket}"')]
    if isinstance(name, str) and isinstance(port, int):
        return [Target(Address(host=name, port=port), host.line,
                       f'"host" => "{name}", "port" => {port}')]
    return []


def _lighttpd_fix(prefix: str | None) -> Callable[[Address], str]:
    def fix(address: Address) -> str:
        where = (f'"socket" => "{address.path}"' if address.path is not None
                 else f'"host" => "{address.host}", "port" => {address.port}')
        return f'scgi.server = ( "{prefix}" => (( {where}, "check-local" => "disable" )) )'
    return fix


def _lighttpd_timeouts(host: LighttpdArray, server: Server) -> list[Finding]:
    findings = []
    for name in ("read-timeout", "write-timeout"):
        seconds = host.get(name)
        if isinstance(seconds, int) and 0 < seconds < server.timeout:
            findings.append(Finding(True, host.line, f'"{name}" => {seconds} is shorter than '
                                    f"--timeout {server.timeout:g}: a request that "
                                    "runs longer fails in lighttpd while its worker goes on",
                                    f'"{name}" => {ceil_seconds(server.timeout)},'))
    return findings


def _lighttpd_body(d: Directive, settings: list[Directive], server: Server) -> list[Finding]:
    limit = server.max_body_size
    found = next((s for s in reversed(settings) if s.name == "server.max-request-size"), None)
    if limit is None or (found is not None and isinstance(found.value, int)
                         and 0 < found.value * 1024 <= limit):
        return []
    shown = (f"server.max-request-size = {found.value}" if found is not None
             else "no server.max-request-size")
    return [Finding(False, found.line if found is not None else d.line,
                    f"{shown}: lighttpd takes bodies larger than the server's --max-body-size "
                    f"{limit}, which the server then refuses (413)",
                    f"server.max-request-size = {max(1, limit // 1024)}")]
