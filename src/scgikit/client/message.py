"""What a client sends and what comes back: the variables, the whole response, its timings.

The variables are the ones nginx sends with its stock ``scgi_params`` for the same
HTTP request (``scgikit.variables``); strings in the URI, header values and ``env``
are sent as UTF-8.  The checks here are the two exchanges' (``blocking.py``,
``aio.py``): a truncated answer, a garbled head, an HTTP server's refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..addresses import AddressLike
from ..protocol import Response as ResponseHead
from ..protocol import ResponseError
from ..variables import http_variables
from .errors import EmptyResponse, MalformedResponse, NotSCGI, http_server_answer

__all__ = ["DEFAULT_TIMEOUT", "START", "HeadersLike", "Response", "Timings", "build_environ",
           "check_complete", "head_error", "refuse_http_server"]

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


def check_complete(status: int, headers: list[tuple[str, str]], received: int,
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


def head_error(exc: ResponseError) -> MalformedResponse:
    if "without a response" in str(exc):
        return EmptyResponse("the server closed the connection without answering")
    return MalformedResponse(str(exc))


START = 64  # bytes of an answer kept to recognise an HTTP server's status line


def refuse_http_server(address: AddressLike, start: bytes, head: ResponseHead) -> None:
    evidence = http_server_answer(start, head)
    if evidence is not None:
        raise NotSCGI.answered(address, evidence)
