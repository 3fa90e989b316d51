"""nginx's configuration against the server's settings: the rules of ``check --front-end``.

Each block that holds an ``scgi_pass`` (a ``location``, mostly) is looked at with the
directives it inherits from the blocks around it (``server``, ``http``), as nginx
inherits them: the innermost level that sets a directive wins, and ``scgi_param`` lines
(with ``include scgi_params``) are inherited only by a level that has none of its own.
A value left unset is nginx's default (``scgi_read_timeout 60s``, ``client_max_body_size
1m``, ``scgi_buffering on``).  Pure: the directives come in, the findings go out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..addresses import Address, AddressError, parse_address
from .findings import Finding, Server, Target, address_findings, ceil_seconds, dedupe, seconds_text
from .readers import Directive

__all__ = ["inspect", "nginx_seconds", "nginx_size"]

#: What the server cannot do without, and what it would make of a request without it.
NEEDED_PARAMS = {
    "REQUEST_METHOD": "every request is taken for a GET",
    "REQUEST_URI": "every request is taken for one of /",
    "QUERY_STRING": "every query string is lost",
}
#: What ``include scgi_params`` brings (nginx's own file, and Debian's).
SCGI_PARAMS = {"REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "CONTENT_TYPE", "DOCUMENT_URI",
               "DOCUMENT_ROOT", "SCGI", "SERVER_PROTOCOL", "REQUEST_SCHEME", "HTTPS",
               "REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT", "SERVER_NAME"}
_TIMEOUTS = {
    "scgi_read_timeout": "a request that runs longer is answered 504 by nginx while its worker "
                         "goes on",
    "scgi_send_timeout": "a request body the app reads later than that is cut off (504) while "
                         "its worker goes on",
}
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
               "M": 2592000, "y": 31536000}
_TIME = re.compile(r"([0-9]+)(ms|s|m|h|d|w|M|y)?")
_SIZE = re.compile(r"([0-9]+)([kKmMgG]?)")


@dataclass(frozen=True)
class _Place:
    """An ``scgi_pass`` and the blocks around it, outermost first (the file's top level
    first of all)."""

    passing: Directive
    chain: tuple[Directive, ...]

    def setting(self, name: str) -> Directive | None:
        """The directive ``name`` as this place inherits it, or None (nginx's default)."""
        for level in reversed(self.chain):
            found = [d for d in level.block or () if d.name == name]
            if found:
                return found[-1]
        return None


def inspect(directives: tuple[Directive, ...], server: Server) -> list[Finding]:
    top = Directive("", (), 0, directives)
    upstreams = {d.args[0]: d for d in directives if d.name == "upstream" and d.args}
    upstreams.update({d.args[0]: d for level in _blocks(top) for d in level.block or ()
                      if d.name == "upstream" and d.args})
    findings: list[Finding] = []
    for place in _places((top,)):
        findings += _address(place, upstreams, server)
        findings += _timeouts(place, server)
        findings += _body_size(place, server)
        findings += _params(place)
        findings += _host_header(place)
        findings += _buffering(place, server)
    return dedupe(findings)


def _blocks(block: Directive) -> Iterator[Directive]:
    for d in block.block or ():
        if d.block is not None:
            yield d
            yield from _blocks(d)


def _places(chain: tuple[Directive, ...]) -> Iterator[_Place]:
    for d in chain[-1].block or ():
        if d.name == "scgi_pass":
            yield _Place(d, chain)
        elif d.block is not None and d.name != "upstream":
            yield from _places((*chain, d))


# --- where requests go -------------------------------------------------------------------

def _address(place: _Place, upstreams: dict[str, Directive], server: Server) -> list[Finding]:
    written = place.passing.args[0] if place.passing.args else ""
    if "$" in written:
        return []  # chosen per request
    upstream = upstreams.get(written)
    if upstream is not None:
        targets = [target for d in upstream.block or () if d.name == "server" and d.args
                   for target in _target(d.args[0], d.line, "down" in d.args[1:])]
    else:
        targets = _target(written, place.passing.line)
    if not targets:
        return []
    return address_findings("nginx", targets, place.passing.line, server,
                            lambda a: f"scgi_pass {_written(a)};")


def _target(text: str, line: int, down: bool = False) -> list[Target]:
    try:
        address = parse_address(text, default_port=80)  # nginx's port when none is written
    except (AddressError, ValueError):
        return []
    return [Target(address, line, text, down)]


def _written(address: Address) -> str:
    return f"unix:{address.path}" if address.path is not None else str(address)


# --- timeouts, body size -------------------------------------------------------------------

def nginx_seconds(text: str) -> float | None:
    """An nginx time (``60``, ``60s``, ``1m30s``, ``500ms``) in seconds; None if it is not one."""
    parts = list(_TIME.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(int(p.group(1)) * _TIME_UNITS[p.group(2) or "s"] for p in parts)


def nginx_size(text: str) -> int | None:
    """An nginx size (``1m``, ``512k``, ``1048576``) in bytes; None if it is not one."""
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[
        match.group(2).lower()]


def _size_text(size: int) -> str:
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _timeouts(place: _Place, server: Server) -> list[Finding]:
    findings = []
    for name, result in _TIMEOUTS.items():
        found = place.setting(name)
        seconds = nginx_seconds(found.args[0]) if found and found.args else 60.0
        if seconds is None:
            continue
        shown = f"{name} {found.args[0]}" if found else f"{name} (nginx's default, 60s)"
        line = found.line if found else place.passing.line
        if server.timeout == 0 and name == "scgi_read_timeout":
            findings.append(Finding(False, line, f"{shown}: nginx gives up on a request after "
                                    f"{seconds_text(seconds)} (504) while the server, with "
                                    "--timeout 0, lets its worker go on without end",
                                    f"--timeout {ceil_seconds(seconds)} or less"))
        elif seconds < server.timeout:
            findings.append(Finding(True, line, f"{shown} is shorter than --timeout "
                                    f"{server.timeout:g}: {result}",
                                    f"{name} {ceil_seconds(server.timeout)}s;"))
    return findings


def _body_size(place: _Place, server: Server) -> list[Finding]:
    limit = server.max_body_size
    found = place.setting("client_max_body_size")
    size = nginx_size(found.args[0]) if found and found.args else 1024**2
    if limit is None or size is None or 0 < size <= limit:
        return []
    shown = (f"client_max_body_size {found.args[0]}" if found
             else "client_max_body_size (nginx's default, 1m)")
    larger = "sets no limit" if size == 0 else "is larger than the server's"
    return [Finding(False, found.line if found else place.passing.line,
                    f"{shown} {larger} (--max-body-size {limit}): the server refuses (413) "
                    "bodies nginx took in whole", f"client_max_body_size {_size_text(limit)};")]


# --- what nginx passes on ------------------------------------------------------------------

def _param_lines(place: _Place) -> list[Directive]:
    """The scgi_param and include lines the requests passed at ``place`` get: those of the
    innermost level that has any (nginx inherits them only into a level without its own)."""
    for level in reversed(place.chain):
        lines = [d for d in level.block or () if d.name in ("scgi_param", "include") and d.args]
        if lines:
            return lines
    return []


def _params(place: _Place) -> list[Finding]:
    """The variables the server needs that the requests passed at ``place`` lack."""
    sent: set[str] = set()
    for d in _param_lines(place):
        if d.name == "scgi_param":
            sent.add(d.args[0])
        elif "scgi_params" in d.args[0].rsplit("/", 1)[-1]:
            sent |= SCGI_PARAMS
        else:
            return []  # another file, not read here: it may hold them
    if "DOCUMENT_URI" in sent:
        sent.add("REQUEST_URI")  # the server takes the path from either
    missing = [name for name in NEEDED_PARAMS if name not in sent]
    if not missing:
        return []
    what = "; ".join(f"without {name}, {NEEDED_PARAMS[name]}" for name in missing)
    return [Finding(True, place.passing.line, f"the requests passed here lack "
                    f"{', '.join(missing)} (no include scgi_params): {what}",
                    "include scgi_params; beside the scgi_pass")]


def _ports(place: _Place) -> list[int]:
    """The ports of the listen lines of the server block around ``place`` (80 if none)."""
    block = next((level for level in reversed(place.chain) if level.name == "server"), None)
    ports = []
    for d in (block.block or ()) if block else ():
        if d.name == "listen" and d.args and not d.args[0].startswith("unix:"):
            port = d.args[0].rpartition(":")[2] if not d.args[0].isdigit() else d.args[0]
            ports.append(int(port) if port.isdigit() else 80)
    return ports or [80]


def _host_header(place: _Place) -> list[Finding]:
    found = next((d for d in reversed(_param_lines(place))
                  if d.name == "scgi_param" and d.args[0] == "HTTP_HOST"), None)
    if found is None or len(found.args) < 2:
        return []
    value = found.args[1]
    if "$http_host" in value or "$request_port" in value:
        return []
    odd = [port for port in _ports(place) if port not in (80, 443)]
    if not odd:
        return []
    return [Finding(False, found.line, f"scgi_param HTTP_HOST {value} leaves out the Host "
                    f"header's port, and nginx listens on port {odd[0]}: an app that builds "
                    f"its URLs from HTTP_HOST leaves the port out",
                    "scgi_param HTTP_HOST $http_host;")]


def _buffering(place: _Place, server: Server) -> list[Finding]:
    buffering = place.setting("scgi_buffering")
    on = buffering is None or buffering.args[:1] != ("off",)
    ignored = place.setting("scgi_ignore_headers")
    ignoring = ignored is not None and any(arg.lower() == "x-accel-buffering"
                                           for arg in ignored.args)
    if on and ignoring and not server.front_end_buffering:
        assert ignored is not None
        return [Finding(False, ignored.line, "scgi_ignore_headers X-Accel-Buffering: nginx "
                        "holds an answer that streams (server-sent events, a generator's "
                        "chunks) until its end, though the server asks it not to "
                        "(X-Accel-Buffering: no)", "take X-Accel-Buffering out of "
                        "scgi_ignore_headers (or, to have nginx buffer every answer, start "
                        "the server with --front-end-buffering)")]
    if not on and server.front_end_buffering:
        assert buffering is not None
        return [Finding(False, buffering.line, "scgi_buffering off: nginx buffers no answer, "
                        "though the server's --front-end-buffering is there to let it; a slow "
                        "client holds a worker for the whole answer",
                        "remove scgi_buffering off (or drop --front-end-buffering)")]
    return []
