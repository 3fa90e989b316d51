"""What a client sends and what comes back: the variables, the whole response, its timings.

The variables are the ones nginx sends with its stock ``scgi_params`` for the same
HTTP request (``scgikit.variables``); strings in the URI, header values and ``env``
are sent as UTF-8.  ``AnswerReader`` reads an answer for both exchanges (``blocking.py``,
``aio.py``), and checks it: a truncated answer, a garbled head, an HTTP server's
refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..addresses import AddressLike
from ..protocol import Body, EndOfMessage, Event, ResponseError, ResponseParser
from ..protocol import Response as ResponseHead
from ..variables import http_variables
from .errors import EmptyResponse, MalformedResponse, NotSCGI, http_server_answer

__all__ = ["DEFAULT_TIMEOUT", "AnswerReader", "HeadersLike", "Response", "Timings",
           "build_environ"]

DEFAULT_TIMEOUT = 30.0

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | None


@dataclass
class Timings:
    """Seconds from the start of the request to each step (curl's -w figures)."""

    connect: float = 0.0
    first_byte: float = 0.0
    total: float = 0.0


@dataclass
class Response:
    """A whole response: status, reason, headers (repeats and order kept) and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    environ: dict[str, str] = field(default_factory=dict, repr=False)
    timings: Timings = field(default_factory=Timings, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case), or ``default``."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return default

    def header_list(self, name: str) -> list[str]:
        """Every value of header ``name``, in order (``Set-Cookie`` comes several times)."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def build_environ(
    uri: str = "/",
    method: str = "GET",
    headers: HeadersLike = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables nginx would send for this request (CONTENT_LENGTH comes from the body)."""
    if not uri.startswith("/") and uri != "*":
        raise ValueError(f"URI must start with '/': {uri!r}")
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    pairs = [(name, _wire(value)) for name, value in pairs]
    if not any(name.lower() == "host" for name, _ in pairs):
        pairs.insert(0, ("Host", "localhost"))  # HTTP/1.1 requires it; curl always sends one
    # SERVER_NAME is the front end's configured name (nginx: server_name), not the Host.
    extra = {name: _wire(value) for name, value in (env or {}).items()}
    return http_variables(method, _wire(uri), pairs, server_name="localhost", extra=extra)


def _wire(text: str) -> str:
    """A str as the bytes UTF-8 gives, in PEP 3333's latin-1 "bytes as str" form."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


class AnswerReader:
    """An answer as it arrives, read by either exchange: ``feed`` it the bytes received,
    and ``next_event`` gives the head, the body's pieces and the end (or ``NEED_DATA``).

    The head is checked as it comes: a garbled one is a ``MalformedResponse``
    (``EmptyResponse`` when no byte came), and an HTTP server's refusal of an SCGI
    request a ``NotSCGI``; the end is checked against the Content-Length announced,
    for a ``MalformedResponse`` when the body was cut short.
    """

    def __init__(self, address: AddressLike, method: str) -> None:
        self.address = address
        self.method = method
        self.parser = ResponseParser()
        self.start = b""  # the first bytes of the answer: do they begin an HTTP status line?
        self.head: ResponseHead | None = None
        self.received = 0  # body bytes

    def feed(self, data: bytes) -> None:
        self.start += data[: _START - len(self.start)]
        self.parser.receive_data(data)

    def next_event(self) -> Event:
        try:
            event = self.parser.next_event()
        except ResponseError as exc:
            if "without a response" in str(exc):
                raise EmptyResponse("the server closed the connection without answering") from None
            raise MalformedResponse(str(exc)) from None
        if isinstance(event, ResponseHead):
            evidence = http_server_answer(self.start, event)
            if evidence is not None:
                raise NotSCGI.answered(self.address, evidence)
            self.head = event
        elif isinstance(event, Body):
            self.received += len(event.data)
        elif isinstance(event, EndOfMessage):
            assert self.head is not None
            _check_complete(self.head.status, self.head.headers, self.received, self.method)
        return event


_START = 64  # bytes of an answer kept to recognise an HTTP server's status line


def _check_complete(status: int, headers: list[tuple[str, str]], received: int,
                    method: str) -> None:
    """A body shorter than the Content-Length the server announced is a truncated answer."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return
    for name, value in headers:
        if name.lower() == "content-length":
            if value.isdigit() and int(value) > received:
                raise MalformedResponse(
                    f"truncated answer: Content-Length is {value} but the server closed "
                    f"after {received} body bytes"
                )
            return
