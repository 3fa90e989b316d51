"""The access log: the facts of each answered request, and the format that makes them a line.

The connection path logs only the facts of a request (an ``Access``: its
variables, status, bytes sent, when it was accepted, the worker model), and
only when there is an access log (``log_access``).  The formatter, compiled
from ``--access-log-format`` once, turns them into the line; it computes only
the fields its format names, so a field costs nothing to a format that leaves
it out.  The master gives the ``scgikit.access`` logger its handler
(``master/logs.py``); ``config.py`` compiles the format to check it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
import time
from collections.abc import Callable
from datetime import datetime

from .queue_time import queue_seconds

__all__ = [
    "ACCESS_FIELDS", "ACCESS_PRESETS", "DEFAULT_ACCESS_FORMAT", "Access", "AccessFormatError",
    "AccessFormatter", "access_fields_table", "access_log", "compile_access_format", "iso8601",
    "log_access",
]

#: nginx's ``combined`` format, then the request time and the worker's pid.
DEFAULT_ACCESS_FORMAT = ('{remote_addr} - {remote_user} [{time_local}] "{request}" {status} '
                         '{bytes_sent} "{referer}" "{user_agent}" {request_time} pid={pid}')
#: Names that stand for a whole format.
ACCESS_PRESETS = {
    "combined": '{remote_addr} - {remote_user} [{time_local}] "{request}" {status} '
                '{bytes_sent} "{referer}" "{user_agent}"',
    "json": "json",  # every named field, as one JSON object per line
}

#: The logger of access lines: it has a handler only where --access-log asks for one.
access_log = logging.getLogger("scgikit.access")


class AccessFormatError(ValueError):
    """An --access-log-format that cannot be compiled; the message names the field."""


class Access:
    """The facts of one answered request, as the connection path knows them."""

    __slots__ = ("variables", "status", "sent", "started", "model")

    def __init__(self, variables: dict[str, str], status: str, sent: int, started: float,
                 model: str) -> None:
        self.variables = variables
        self.status = status  # the status line, "200 OK"
        self.sent = sent  # bytes sent, head included
        self.started = started  # time.monotonic() at the connection's accept
        self.model = model

    def __str__(self) -> str:  # for a handler someone else added: the default line
        return compile_access_format(DEFAULT_ACCESS_FORMAT).line(self, time.time(), os.getpid())


# --- fields ----------------------------------------------------------------------------
# Each field has a value, for JSON (None when unknown, an int or a float where it is a
# number), and a text, for lines: "-" when unknown, and values from the request escaped as
# nginx does (\xHH for '"', '\\' and anything outside printable ASCII), so that a line
# is always one line and its quotes always delimit.  The text getters are written out for
# speed: one call per field and per request.

Value = str | int | float | None
Getter = Callable[["Access", float, int], Value]  # (facts, time.time(), pid) -> value
TextGetter = Callable[["Access", float, int], str]

_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02X}" if code < 256 else f"\\u{code:04X}"


def _clean(value: str | None) -> str:
    """``value`` as a line may hold it."""
    if not value:
        return "-"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return _UNSAFE.sub(_escape, value)


class _Variable:
    """A field that is one SCGI variable."""

    def __init__(self, name: str) -> None:
        self.name = name

    def value(self, access: Access, now: float, pid: int) -> Value:
        return access.variables.get(self.name) or None

    def text(self, access: Access, now: float, pid: int) -> str:
        value = access.variables.get(self.name)
        if value and value.isascii() and value.isprintable() and '"' not in value \
                and "\\" not in value:
            return value  # the common case, without another call
        return _clean(value)


def _uri(access: Access, now: float, pid: int) -> Value:
    variables = access.variables
    uri = variables.get("REQUEST_URI")
    if uri:
        return uri
    path = variables.get("DOCUMENT_URI") or (
        variables.get("SCRIPT_NAME", "") + variables.get("PATH_INFO", ""))
    query = variables.get("QUERY_STRING")
    return f"{path}?{query}" if query else path or None


def _request(access: Access, now: float, pid: int) -> str:
    variables = access.variables
    return (f'{variables.get("REQUEST_METHOD") or "-"} {_uri(access, now, pid) or "-"} '
            f'{variables.get("SERVER_PROTOCOL") or "-"}')


def _request_text(access: Access, now: float, pid: int) -> str:
    line = _request(access, now, pid)
    if line.isascii() and line.isprintable() and '"' not in line and "\\" not in line:
        return line
    return _clean(line)


def _status(access: Access, now: float, pid: int) -> Value:
    code = access.status.partition(" ")[0]
    return int(code) if code.isdigit() else code or None


def _status_text(access: Access, now: float, pid: int) -> str:
    code = access.status.partition(" ")[0]
    return code if code.isdigit() else _clean(code)


def _sent(access: Access, now: float, pid: int) -> int:
    return access.sent


def _request_time(access: Access, now: float, pid: int) -> float:
    return round(time.monotonic() - access.started, 6)


def _queue_ms(access: Access, now: float, pid: int) -> float | None:
    queued = queue_seconds(access.variables, access.started)
    return None if queued is None else round(queued * 1000.0, 3)


def _queue_ms_text(access: Access, now: float, pid: int) -> str:
    queued = queue_seconds(access.variables, access.started)
    return "-" if queued is None else f"{queued * 1000.0:.3f}"


def _pid(access: Access, now: float, pid: int) -> int:
    return pid


def _worker(access: Access, now: float, pid: int) -> str:
    return access.model


class _Clock:
    """A time field, rendered once a second (nginx caches its times the same way)."""

    def __init__(self, render: Callable[[float], str]) -> None:
        self.render = render
        self.last: tuple[int, str] = (-1, "")

    def __call__(self, access: Access, now: float, pid: int) -> str:
        second, text = self.last  # one tuple: threads may race, never see half of it
        if int(now) != second:
            text = self.render(int(now))
            self.last = (int(now), text)
        return text


def _local(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))


def iso8601(now: float, precision: str = "seconds") -> str:
    return datetime.fromtimestamp(now).astimezone().isoformat(timespec=precision)


def _as_text(getter: Getter) -> TextGetter:
    return lambda access, now, pid: _clean(str(getter(access, now, pid) or ""))


def _variable(name: str) -> tuple[Getter, TextGetter]:
    field = _Variable(name)
    return field.value, field.text


def _clock(render: Callable[[float], str]) -> tuple[Getter, TextGetter]:
    clock = _Clock(render)
    return clock, clock


Field = Callable[[], tuple[Getter, TextGetter]]  # makes a field's (value, text) getters

#: Every named field: how its getters are made, and what it means (the docs' table).
ACCESS_FIELDS: dict[str, tuple[Field, str]] = {
    "remote_addr": (lambda: _variable("REMOTE_ADDR"),
                    "the client's address, as the front end gives it (REMOTE_ADDR)"),
    "remote_user": (lambda: _variable("REMOTE_USER"),
                    "the user the front end authenticated (REMOTE_USER)"),
    "time_local": (lambda: _clock(_local),
                   "local time at the end of the answer: `30/Nov/2026:01:02:03 +0000`"),
    "time_iso8601": (lambda: _clock(iso8601),
                     "the same in ISO 8601: `2026-11-30T01:02:03+00:00`"),
    "request": (lambda: (_request, _request_text),
                "the request line: method, URI and protocol"),
    "method": (lambda: _variable("REQUEST_METHOD"), "the method (REQUEST_METHOD)"),
    "uri": (lambda: (_uri, _as_text(_uri)), "the URI with its query: REQUEST_URI (nginx sends it), "
            "else the path (DOCUMENT_URI, or SCRIPT_NAME and PATH_INFO) and QUERY_STRING"),
    "protocol": (lambda: _variable("SERVER_PROTOCOL"), "the protocol (SERVER_PROTOCOL)"),
    "status": (lambda: (_status, _status_text), "the status code the app answered"),
    "bytes_sent": (lambda: (_sent, lambda access, now, pid: str(access.sent)),
                   "bytes sent to the front end, status line and headers included "
                   "(nginx's `$bytes_sent`)"),
    "referer": (lambda: _variable("HTTP_REFERER"), "the Referer header"),
    "user_agent": (lambda: _variable("HTTP_USER_AGENT"), "the User-Agent header"),
    "request_time": (lambda: (_request_time, lambda access, now, pid:
                              f"{time.monotonic() - access.started:.6f}"),
                     "seconds from the connection's accept to the end of the answer, "
                     "to the microsecond"),
    "queue_ms": (lambda: (_queue_ms, _queue_ms_text),
                 "milliseconds from the front end's stamp (`REQUEST_START`, else the "
                 "X-Request-Start header: what `scgikit config` sets up for nginx and Apache) "
                 "to the connection's accept, to the microsecond; `-` without a stamp, or "
                 "with one that is not a time or is more than an hour off"),
    "pid": (lambda: (_pid, lambda access, now, pid: str(pid)), "the worker's process id"),
    "worker": (lambda: (_worker, _worker), "the worker model: sync, threads or asyncio"),
}
#: Fields that take a name: ``{var:HTTP_X_REQUEST_ID}``, ``{header:x-request-id}``.
NAMED_FIELDS = {
    "var": "any SCGI variable by its name, as the front end sent it",
    "header": "any request header by its name, in any case (`{header:x-request-id}` is the "
              "variable HTTP_X_REQUEST_ID)",
}


class _Format:
    """A format compiled: a %-template and the text getters of its fields, in order."""

    def __init__(self, template: str, getters: list[TextGetter]) -> None:
        self.template = template
        self.getters = getters

    def line(self, access: Access, now: float, pid: int) -> str:
        return self.template % tuple([get(access, now, pid) for get in self.getters])


class _JsonFormat:
    """Every named field as one JSON object."""

    def __init__(self) -> None:
        self.getters = [(name, make()[0]) for name, (make, _) in ACCESS_FIELDS.items()]

    def line(self, access: Access, now: float, pid: int) -> str:
        return json.dumps({name: get(access, now, pid) for name, get in self.getters})


def compile_access_format(text: str) -> _Format | _JsonFormat:
    """Compile ``--access-log-format``; raises AccessFormatError naming what is wrong in it."""
    text = ACCESS_PRESETS.get(text, text)
    if text == "json":
        return _JsonFormat()
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise AccessFormatError(f"{exc} (write {{{{ and }}}} for a literal brace)") from None
    template, getters = [], []
    for literal, name, spec, conversion in parts:
        template.append(literal.replace("%", "%%"))
        if name is None:
            continue
        if conversion:
            raise AccessFormatError(f"{{{name}!{conversion}}}: conversions are not supported")
        getters.append(_field(name, spec or ""))
        template.append("%s")
    return _Format("".join(template), getters)


def _field(name: str, argument: str) -> TextGetter:
    if name in NAMED_FIELDS:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", argument):
            raise AccessFormatError(f"{{{name}:{argument}}} needs a name, as in {{{name}:NAME}}")
        variable = argument if name == "var" else "HTTP_" + argument.upper().replace("-", "_")
        return _variable(variable)[1]
    if name not in ACCESS_FIELDS:
        raise AccessFormatError(f"unknown field {{{name}}}; the fields are "
                          + ", ".join([*ACCESS_FIELDS, "var:NAME", "header:NAME"]))
    if argument:
        raise AccessFormatError(f"{{{name}:{argument}}}: only var and header take a name")
    return ACCESS_FIELDS[name][0]()[1]


class AccessFormatter(logging.Formatter):
    """Formats the ``Access`` records of the access log with a compiled format."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.line = compile_access_format(text).line

    def format(self, record: logging.LogRecord) -> str:
        if type(record.msg) is not Access:
            return super().format(record)
        return self.line(record.msg, record.created, record.process or 0)


def access_fields_table() -> str:
    """The fields of --access-log-format as a Markdown table (docs/server.md has it)."""
    rows = ["| field | value |", "|---|---|"]
    rows += [f"| `{{{name}}}` | {doc} |" for name, (_, doc) in ACCESS_FIELDS.items()]
    rows += [f"| `{{{name}:NAME}}` | {doc} |" for name, doc in NAMED_FIELDS.items()]
    return "\n".join(rows)


def log_access(variables: dict[str, str], status: str, sent: int, started: float,
               model: str) -> None:
    """One access-log record; the access log's formatter (``AccessFormatter``) makes the
    line.  Callers check first that there is an access log, so without one this costs
    nothing.  The record is made and handled directly: ``info()`` would also look up the
    caller's file and line in the stack, which no access line shows (a third of the cost)."""
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0,
        Access(variables, status, sent, started, model), (), None))


def logging_access() -> bool:
    """Whether there is an access log to write to (set up once, before the workers start)."""
    return bool(access_log.handlers) and access_log.isEnabledFor(logging.INFO)
