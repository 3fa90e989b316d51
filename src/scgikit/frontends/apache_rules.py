"""Apache's configuration against the server's settings: the rules of ``check --front-end``.

Each ``ProxyPass``/``ProxyPassMatch`` to ``scgi://`` (or ``unix:PATH|scgi://``, or a
``balancer://`` of such ``BalancerMember`` lines) and each ``SCGIMount``, with the
directives of the sections around it (the innermost wins): the time Apache waits for the
answer (``timeout=`` on the line, else ``ProxyTimeout``, else ``Timeout``, 60 s by
default) and ``LimitRequestBody`` (by default 1 GiB from Apache 2.4.54, no limit before).

Pure: the directives come in, the findings go out.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..addresses import Address
from .findings import Finding, Server, Target, address_findings, ceil_seconds, dedupe, seconds_text
from .readers import Directive, walk

__all__ = ["apache_seconds", "inspect"]

APACHE_TIMEOUT = 60
#: Apache's LimitRequestBody when none is set, from 2.4.54 (no limit before).
APACHE_BODY_LIMIT = 1024**3
SCGI_PORT = 4000  # mod_proxy_scgi's port when the URL has none
_SCGI_URL = re.compile(r"(?:unix:(?P<path>[^|]+)\|)?scgi://(?P<host>\[[^\]]*\]|[^:/]*)"
                       r"(?::(?P<port>[0-9]+))?", re.IGNORECASE)
_APACHE_SECONDS = re.compile(r"([0-9]+)(ms|s|mi|hr)?")


def _inherited(chain: tuple[Directive, ...], name: str) -> Directive | None:
    for level in reversed(chain):
        found = [d for d in level.block or () if d.name.lower() == name.lower() and d.args]
        if found:
            return found[-1]
    return None


def inspect(directives: tuple[Directive, ...], server: Server) -> list[Finding]:
    balancers = {d.args[0].rstrip("/"): d for d, _ in walk(directives)
                 if d.name.lower() == "proxy" and d.block is not None and d.args}
    findings: list[Finding] = []
    for d, chain in walk(directives):
        name = d.name.lower()
        if name in ("proxypass", "proxypassmatch") and d.args:
            in_location = chain[-1].name.lower() in ("location", "locationmatch")
            url, keys = (d.args[0], d.args[1:]) if in_location else (
                d.args[1] if len(d.args) > 1 else "!", d.args[2:])
            targets = _url_targets(url, d.line, balancers)
            if not targets:
                continue  # "!", or not SCGI
            findings += address_findings("Apache", targets, d.line, server, _proxy_fix)
            findings += _apache_timeout(d, keys, chain, server)
            findings += _apache_body(d, chain, server)
        elif name == "scgimount" and len(d.args) > 1:
            targets = _url_targets(f"scgi://{d.args[1]}", d.line, {})
            findings += address_findings("Apache", targets, d.line, server,
                                         _mount_fix(d.args[0]))
            findings += _apache_body(d, chain, server)
    return dedupe(findings)


def _url_targets(url: str, line: int, balancers: dict[str, Directive]) -> list[Target]:
    if url.lower().startswith("balancer://"):
        balancer = balancers.get(url.rstrip("/"))
        if balancer is None:
            balancer = next((b for name, b in balancers.items()
                             if url.lower().startswith(name.lower() + "/")), None)
        return [target for member in (balancer.block or () if balancer else ())
                if member.name.lower() == "balancermember" and member.args
                for target in _url_targets(member.args[0], member.line, {})]
    match = _SCGI_URL.match(url)
    if match is None:
        return []
    if match.group("path"):
        return [Target(Address(path=match.group("path")), line, url)]
    host = match.group("host").strip("[]") or "localhost"
    return [Target(Address(host=host, port=int(match.group("port") or SCGI_PORT)), line, url)]


def _mount_fix(prefix: str) -> Callable[[Address], str]:
    return lambda address: f"SCGIMount {prefix} {address}"


def _proxy_fix(address: Address) -> str:
    if address.path is not None:
        return f'ProxyPass "PREFIX" "unix:{address.path}|scgi://localhost/PREFIX"'
    return f'ProxyPass "PREFIX" "scgi://{address}/PREFIX"'


def apache_seconds(text: str) -> float | None:
    """An Apache time: seconds, or with a unit (``ms``, ``s``, ``mi``, ``hr``)."""
    match = _APACHE_SECONDS.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)) * {None: 1, "s": 1, "ms": 0.001, "mi": 60, "hr": 3600}[
        match.group(2)]


def _apache_timeout(d: Directive, keys: tuple[str, ...], chain: tuple[Directive, ...],
                    server: Server) -> list[Finding]:
    key = next((k for k in keys if k.lower().startswith("timeout=")), None)
    if key is not None:
        shown, line, text = key, d.line, key.partition("=")[2]
        fix = f"timeout={ceil_seconds(server.timeout)} on this ProxyPass"
    else:
        found = _inherited(chain, "ProxyTimeout") or _inherited(chain, "Timeout")
        if found is not None:
            shown, line, text = f"{found.name} {found.args[0]}", found.line, found.args[0]
        else:
            shown, line = f"Timeout (Apache's default, {APACHE_TIMEOUT}s)", d.line
            text = str(APACHE_TIMEOUT)
        fix = f"ProxyTimeout {ceil_seconds(server.timeout)}"
    seconds = apache_seconds(text)
    if seconds is None or seconds == 0:
        return []
    if server.timeout == 0:
        return [Finding(False, line, f"{shown}: Apache gives up on a request after "
                        f"{seconds_text(seconds)} (504) while the server, with --timeout 0, "
                        "lets its worker go on without end",
                        f"--timeout {ceil_seconds(seconds)} or less")]
    if seconds < server.timeout:
        return [Finding(True, line, f"{shown} is shorter than --timeout "
                        f"{server.timeout:g}: a request that runs longer is "
                        "answered 504 by Apache while its worker goes on", fix)]
    return []


def _apache_body(d: Directive, chain: tuple[Directive, ...], server: Server) -> list[Finding]:
    limit = server.max_body_size
    found = _inherited(chain, "LimitRequestBody")
    if limit is None:
        return []
    if found is None:
        if limit >= APACHE_BODY_LIMIT:
            return []
        shown, line = "no LimitRequestBody (Apache's default: 1 GiB from 2.4.54)", d.line
    elif found.args[0].isdigit() and 0 < int(found.args[0]) <= limit:
        return []
    else:
        shown, line = f"LimitRequestBody {found.args[0]}", found.line
    return [Finding(False, line, f"{shown}: Apache takes bodies larger than the server's "
                    f"--max-body-size {limit}, which the server then refuses (413)",
                    f"LimitRequestBody {limit}")]
