"""SCGI, sans I/O: bytes in, parsed requests and responses out, and back.

Nothing here touches a socket, an event loop or a logger, so the server, the
client and the development gateway all share one codec.

A request is a netstring of NUL-terminated name/value pairs followed by the
body (https://python.ca/scgi/protocol.txt):

    <length>":"<name>NUL<value>NUL...","<body of CONTENT_LENGTH bytes>

``parse_head`` is the fast path used by the server: it looks at what has been
received so far and returns the variables and where the body starts, or
``None`` when more bytes are needed.  Every check that can be made on a partial
head is made at once, so an oversized or garbled head is refused before it is
buffered.  ``RequestParser`` wraps it in an incremental, event-style API.
``parse_head`` is the C accelerator (``scgikit._speedups``) when it was built,
which hands every unusual head to the pure function ``parse_head_pure``, so the
two give the same results and raise the same errors; ``ACCELERATED`` says which.

A response is CGI-style: header lines, a blank line, the body.  The status
comes from a ``Status:`` header, or an ``HTTP/1.x`` status line, or neither
(200, or 302 when there is a ``Location``).  ``ResponseParser`` reads one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .accelerator import ACCELERATED, speedups

__all__ = [
    "ACCELERATED",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_RESPONSE_HEAD_SIZE",
    "NEED_DATA",
    "Body",
    "EndOfMessage",
    "HTTPRequestError",
    "LocalProtocolError",
    "ProtocolError",
    "Request",
    "RequestParser",
    "Response",
    "ResponseError",
    "ResponseParser",
    "encode_request",
    "error_response",
    "format_response_head",
    "parse_head",
    "parse_head_pure",
    "parse_response_head",
]

#: Largest header netstring accepted by default (the ``<length>`` value).
DEFAULT_MAX_HEADER_SIZE: Final = 64 * 1024
#: Largest CGI response head (status and header lines) accepted by default.
DEFAULT_MAX_RESPONSE_HEAD_SIZE: Final = 64 * 1024


class ProtocolError(Exception):
    """The peer sent bytes that break the SCGI protocol.

    ``status`` is the HTTP status a server should answer with, when it still can.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> bytes:
        """The answer a server sends for this error (a CGI answer: the front end relays it)."""
        return error_response(self.status)


class HTTPRequestError(ProtocolError):
    """The first bytes are an HTTP request line: a browser or curl pointed at the SCGI port.

    Its answer is plain HTTP/1.0, which the HTTP client understands, saying how to reach
    an SCGI backend, instead of the "empty reply from server" people are puzzled by.
    """

    def __init__(self, method: str) -> None:
        super().__init__(f"an HTTP request ({method} ...) reached the SCGI port", status=400)

    def response(self) -> bytes:
        body = HTTP_ON_SCGI_PORT.encode("ascii")
        return (
            "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii") + body


HTTP_ON_SCGI_PORT = """\
This is an SCGI endpoint (scgikit), not an HTTP server.

Browsers and HTTP clients reach it through a front end that speaks SCGI to it:
nginx (scgi_pass), Apache (mod_proxy_scgi) or lighttpd (mod_scgi);
`scgikit config nginx` prints a configuration.
Without a front end, for development:
  scgikit serve APP --http 127.0.0.1:8000      (an HTTP gateway in front)
  scgikit gateway --listen 127.0.0.1:8000 --to ADDRESS
and to send one SCGI request from the command line:
  scgikit request ADDRESS /path
"""

# An HTTP/1.x request line starts with a method token and a space (RFC 9112 3);
# HTTP/2 with prior knowledge starts with its connection preface.
_HTTP_REQUEST_LINE = re.compile(rb"(?:[A-Z]{3,10}) ")
_HTTP2_PREFACE = b"PRI * HTTP/2"


class ResponseError(ProtocolError):
    """A server sent a malformed or truncated CGI response."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=502)


class LocalProtocolError(ValueError):
    """Our own caller asked for something SCGI cannot express (a NUL in a name...)."""


class _NeedData:
    """Sentinel returned by ``next_event`` when more bytes must be received."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True)
class Request:
    """The head of an SCGI request: its variables, with CONTENT_LENGTH parsed."""

    environ: dict[str, str]
    content_length: int


@dataclass(frozen=True)
class Response:
    """The head of a CGI response."""

    status: int
    reason: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class Body:
    """A piece of a message body."""

    data: bytes


@dataclass(frozen=True)
class EndOfMessage:
    """The body is complete."""


Event = Request | Response | Body | EndOfMessage | _NeedData


# --- request heads -----------------------------------------------------------------------

def _check_length(digits: bytes, what: str) -> None:
    # SCGI: "the length is ASCII digits only"; netstrings forbid leading zeros.
    # (bytes.isdigit() is true for ASCII digits only.)
    if not digits:
        raise ProtocolError(f"{what} is empty")
    if not digits.isdigit():
        raise ProtocolError(f"{what} is not ASCII digits: {digits[:20]!r}")
    if len(digits) > 1 and digits[0] == 0x30:
        raise ProtocolError(f"{what} has a leading zero: {digits[:20]!r}")


def _refuse_http(data: bytes | bytearray) -> None:
    """Raise ``HTTPRequestError`` if ``data`` starts like an HTTP request."""
    if data.startswith(_HTTP2_PREFACE):
        raise HTTPRequestError("PRI")
    match = _HTTP_REQUEST_LINE.match(data)
    if match and not data.startswith(b"PROXY "):  # the PROXY protocol is not HTTP
        raise HTTPRequestError(match.group().decode("ascii").strip())


def _check_partial_prefix(data: bytes | bytearray, max_header_size: int) -> None:
    """No ':' yet: refuse the prefix now if no completion of it could be valid."""
    max_digits = len(str(max_header_size))
    prefix = bytes(data[: max_digits + 1])
    if prefix and not prefix.isdigit():
        _refuse_http(data)
        raise ProtocolError(f"netstring length is not ASCII digits: {prefix[:20]!r}")
    # A leading zero is wrong whatever follows: the same 400 as when the ':' is in view.
    if prefix[:1] == b"0" and len(prefix) > 1:
        raise ProtocolError(f"netstring length has a leading zero: {prefix!r}")
    if len(prefix) > max_digits:
        raise ProtocolError(
            f"netstring length prefix {prefix!r}... exceeds the maximum header size "
            f"of {max_header_size} bytes",
            status=431,
        )


def parse_head_pure(
    data: bytes | bytearray, max_header_size: int = DEFAULT_MAX_HEADER_SIZE
) -> tuple[dict[str, str], int, int] | None:
    """Parse the header netstring at the start of ``data``.

    Returns ``(environ, content_length, consumed)``: the variables (names and
    values decoded as latin-1, as PEP 3333 wants), the body length, and the
    offset where the body starts.  Returns ``None`` if ``data`` holds only part
    of the head.  Raises ``ProtocolError`` as soon as the bytes so far break a
    rule, so a bad length prefix is refused before its header is buffered.
    """
    # This runs once per request: the common case is checked with as few
    # operations as possible, and every error is explained by the slow helpers.
    colon = data.find(b":", 0, 21)
    if colon < 0:
        _check_partial_prefix(data, max_header_size)
        return None
    digits = data[:colon]
    if not digits.isdigit() or (colon > 1 and digits[0] == 0x30):
        _refuse_http(data)
        _check_length(bytes(digits), "netstring length")
    size = int(digits)
    if size > max_header_size:
        raise ProtocolError(
            f"header netstring of {size} bytes exceeds the maximum of {max_header_size}",
            status=431,
        )
    end = colon + 1 + size
    if len(data) <= end:
        return None
    if data[end] != 0x2C:  # ","
        raise ProtocolError(f"netstring of {size} bytes is not followed by ','")
    environ, content_length = parse_variables(data[colon + 1 : end])
    return environ, content_length, end + 1


# The C parse_head where the accelerator runs (accelerator.py decides), else the pure one.
parse_head = parse_head_pure
if speedups is not None:
    speedups.setup(parse_head_pure, DEFAULT_MAX_HEADER_SIZE)
    parse_head = speedups.parse_head


def parse_variables(block: bytes | bytearray) -> tuple[dict[str, str], int]:
    """Parse the inside of the header netstring: NUL-terminated name/value pairs."""
    items = block.decode("latin-1").split("\0")
    # A well-formed block ends with NUL, so the split leaves one empty string last,
    # after an even number of names and values, the first of them CONTENT_LENGTH.
    count = len(items) - 1
    if items[count] or count & 1 or items[0] != "CONTENT_LENGTH":
        _refuse_block(items, count)
    pairs = iter(items)  # zip(pairs, pairs) takes name, value, name...; the last "" is left
    environ = dict(zip(pairs, pairs))
    if len(environ) * 2 != count:
        environ = _merge_repeated(items[0:count:2], items[1:count:2])
    if environ.get("SCGI") != "1" or "" in environ:
        _refuse_variables(environ)
    length = items[1]  # CONTENT_LENGTH's value: a repeated one was refused
    if length == "0":
        return environ, 0
    # str.isdigit() also accepts digits such as '\xb2' (superscript two): require ASCII.
    if not (length.isascii() and length.isdigit()) or length[0] == "0":
        _check_length(length.encode("latin-1"), "CONTENT_LENGTH")
    return environ, int(length)


def _refuse_block(items: list[str], count: int) -> None:
    """The header block's shape is wrong: say how."""
    if items[count] or count & 1:
        raise ProtocolError("header block is not a sequence of NUL-terminated name/value pairs")
    if not count:
        raise ProtocolError("header block is empty; CONTENT_LENGTH and SCGI are required")
    # SCGI: "The first request header must have the name CONTENT_LENGTH".
    raise ProtocolError(f"first header must be CONTENT_LENGTH, not {items[0][:40]!r}")


def _refuse_variables(environ: dict[str, str]) -> None:
    """A name is empty, or SCGI=1 is missing: say which."""
    if "" in environ:
        raise ProtocolError("header with an empty name")
    # SCGI: "a header named SCGI with a value of 1 must be present".
    raise ProtocolError(
        "missing SCGI header" if "SCGI" not in environ
        else f"SCGI header must be '1', not {environ['SCGI'][:20]!r}"
    )


def _merge_repeated(names: list[str], values: list[str]) -> dict[str, str]:
    # nginx forwards two "Cookie:" lines as two HTTP_COOKIE variables.  Merge
    # them as HTTP does; any other repeated variable is ambiguous, so refuse it.
    environ: dict[str, str] = {}
    for name, value in zip(names, values):
        if name not in environ:
            environ[name] = value
        elif name == "HTTP_COOKIE":
            environ[name] += "; " + value
        elif name.startswith("HTTP_"):
            environ[name] += ", " + value
        else:
            raise ProtocolError(f"duplicate header {name!r}")
    return environ


def encode_request(environ: Mapping[str, str], content_length: int = 0) -> bytes:
    """Encode the header netstring of a request whose body has ``content_length`` bytes.

    CONTENT_LENGTH goes first and ``SCGI=1`` is added, whatever ``environ`` holds
    for them.  Strings are encoded as latin-1 (PEP 3333's "bytes as str").
    """
    if content_length < 0:
        raise LocalProtocolError(f"content length {content_length} is negative")
    parts = ["CONTENT_LENGTH", str(content_length), "SCGI", "1"]
    for name, value in environ.items():
        if name in ("CONTENT_LENGTH", "SCGI"):
            continue
        if not name or "\0" in name or "\0" in value:
            raise LocalProtocolError(f"variable {name!r} is empty or contains NUL")
        parts += (name, value)
    parts.append("")
    try:
        block = "\0".join(parts).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"variable cannot be encoded as latin-1: {exc}") from None
    return b"%d:%b," % (len(block), block)


class _Parser:
    """What both incremental parsers share: the bytes received so far, and the peer's close.

    Feed bytes with ``receive_data`` (``b""`` means the peer closed), then call
    ``next_event`` until it returns ``NEED_DATA``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self._done = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
        else:
            self._buffer += data


class RequestParser(_Parser):
    """Incremental parser for one SCGI request (server side).

    Events: first a ``Request``, then ``Body`` pieces, then ``EndOfMessage``.
    """

    def __init__(
        self,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int | None = None,
    ) -> None:
        super().__init__()
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._remaining: int | None = None  # body bytes still due; None before the head

    def next_event(self) -> Event:
        if self._done:
            return NEED_DATA
        if self._remaining is None:
            return self._next_head()
        if self._remaining == 0:
            self._done = True
            return EndOfMessage()
        if self._buffer:
            piece = bytes(self._buffer[: self._remaining])
            del self._buffer[: len(piece)]
            self._remaining -= len(piece)
            return Body(piece)
        if self._closed:
            raise ProtocolError(f"connection closed with {self._remaining} body bytes missing")
        return NEED_DATA

    def _next_head(self) -> Event:
        parsed = parse_head(self._buffer, self.max_header_size)
        if parsed is None:
            if self._closed:
                raise ProtocolError(
                    "connection closed before the header was complete"
                    if self._buffer else "connection closed before a request was sent"
                )
            return NEED_DATA
        environ, length, consumed = parsed
        if self.max_body_size is not None and length > self.max_body_size:
            raise ProtocolError(
                f"body of {length} bytes exceeds the maximum of {self.max_body_size}", status=413
            )
        del self._buffer[:consumed]
        self._remaining = length
        return Request(environ, length)


# --- responses -----------------------------------------------------------------------------

_REASONS: Final = {
    200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason_phrase(status: int) -> str:
    """The usual reason phrase for ``status``, or ``""``."""
    return _REASONS.get(status, "")


def format_response_head(status: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """Encode a CGI response head: ``Status: 200 OK``, the headers, a blank line.

    Always the ``Status:`` form, never an ``HTTP/1.x`` line, which some front
    ends (Apache) refuse.  Callers validate names and values first.
    """
    lines = [f"Status: {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def parse_response_head(head: bytes) -> Response:
    """Parse a complete CGI response head (without the blank line that ends it)."""
    lines = head.decode("latin-1").split("\n")
    status, reason = 200, "OK"
    first = lines[0].rstrip("\r")
    if first.startswith("HTTP/"):
        version, _, rest = first.partition(" ")
        status, reason = _parse_status(rest, first)
        del lines[0]
    headers: list[tuple[str, str]] = []
    saw_status = False
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t" and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ResponseError(f"malformed response header line {line[:80]!r}")
        value = value.strip()
        if name.lower() == "status" and not saw_status:
            status, reason = _parse_status(value, line)
            saw_status = True
            continue
        headers.append((name, value))
    if not saw_status and not first.startswith("HTTP/"):
        if any(name.lower() == "location" for name, _ in headers):
            status, reason = 302, "Found"  # CGI: a Location without Status redirects
    return Response(status, reason, headers)


def _parse_status(text: str, line: str) -> tuple[int, str]:
    code, _, reason = text.strip().partition(" ")
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise ResponseError(f"malformed status in {line[:80]!r}")
    status = int(code)
    if status < 100:
        raise ResponseError(f"status {status} is out of range in {line[:80]!r}")
    return status, reason.strip() or reason_phrase(status)


class ResponseParser(_Parser):
    """Incremental parser for a CGI response (client side).

    The response ends when the server closes the connection: feed ``b""`` then.
    Events: ``Response``, then ``Body`` pieces, then ``EndOfMessage``.
    """

    def __init__(self, max_head_size: int = DEFAULT_MAX_RESPONSE_HEAD_SIZE) -> None:
        super().__init__()
        self.max_head_size = max_head_size
        self._in_body = False

    def next_event(self) -> Event:
        if self._done:
            return NEED_DATA
        if self._in_body:
            if self._buffer:
                piece = bytes(self._buffer)
                self._buffer.clear()
                return Body(piece)
            if self._closed:
                self._done = True
                return EndOfMessage()
            return NEED_DATA
        return self._next_head()

    def _next_head(self) -> Event:
        end, sep = _find_blank_line(self._buffer)
        if end < 0:
            if len(self._buffer) > self.max_head_size:
                raise ResponseError(
                    f"response head exceeds {self.max_head_size} bytes without a blank line"
                )
            if self._closed:
                raise ResponseError(
                    "connection closed before the response head was complete"
                    if self._buffer else "connection closed without a response"
                )
            return NEED_DATA
        if end > self.max_head_size:
            raise ResponseError(f"response head exceeds {self.max_head_size} bytes")
        response = parse_response_head(bytes(self._buffer[:end]))
        del self._buffer[: end + sep]
        self._in_body = True
        return response


def _find_blank_line(buffer: bytearray) -> tuple[int, int]:
    # CGI allows bare LF line ends; take whichever blank line comes first.
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return crlf, 4 if crlf >= 0 else 0


def error_response(status: int) -> bytes:
    """A complete, minimal CGI answer for ``status``: no detail leaks to the client."""
    text = f"{status} {reason_phrase(status)}".rstrip()
    body = (text + "\n").encode("ascii")
    return (
        f"Status: {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body
