"""An SCGI client: send one request to a backend, as nginx would, and read its answer.

    >>> from scgikit import client
    >>> response = client.request("localhost:4000", "/hello?name=you")
    >>> response.status, response.header("Content-Type"), response.body

Three forms share one implementation of the exchange:

* ``request(...)`` returns a ``Response`` holding the whole body;
* ``stream(...)`` returns a ``StreamedResponse`` (a context manager) whose
  ``iter_body()`` yields the body in chunks, never holding all of it;
* ``await arequest(...)`` is ``request`` for asyncio.

The variables sent are the ones nginx sends with its stock ``scgi_params`` for
the same HTTP request (``scgikit.variables``), encoded by the protocol core.
Strings in the URI, header values and ``env`` are sent as UTF-8.

Errors are ``ClientError`` subclasses that say what went wrong, each with the
exit code curl uses for the same failure (``exit_code``).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .addresses import AddressError, AddressLike, parse_address
from .protocol import (
    NEED_DATA,
    Body,
    EndOfMessage,
    ResponseError,
    ResponseParser,
    encode_request,
)
from .protocol import Response as ResponseHead
from .variables import http_variables

__all__ = [
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "EmptyResponse",
    "MalformedResponse",
    "NotSCGI",
    "RequestTimeout",
    "Response",
    "StreamedResponse",
    "Timings",
    "arequest",
    "build_environ",
    "connect",
    "http_server_answer",
    "receive",
    "request",
    "stream",
]

DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 256 * 1024
# Bodies up to this size are sent in the same write as the head.
_SMALL_BODY = 64 * 1024
# An iterable body of unknown length is spooled (once) to learn its length;
# up to this size the spool stays in memory.
_SPOOL_IN_MEMORY = 1024 * 1024

BodyLike = bytes | bytearray | memoryview | str | IO[bytes] | Iterable[bytes] | None
HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | None


class ClientError(Exception):
    """The exchange with the SCGI server failed; ``exit_code`` is curl's for the same failure."""

    exit_code = 1


class ConnectFailed(ClientError):
    """The server could not be reached (refused, no such socket, unknown host)."""

    exit_code = 7


class RequestTimeout(ClientError, TimeoutError):
    """The server did not accept, read or answer within the timeout."""

    exit_code = 28


class ConnectionLost(ClientError):
    """The connection broke in the middle of the exchange."""

    exit_code = 56


class MalformedResponse(ClientError, ResponseError):
    """The server answered with something that is not a CGI response, or cut it short."""

    exit_code = 8


class EmptyResponse(MalformedResponse):
    """The server closed the connection without answering a single byte."""

    exit_code = 52


class NotSCGI(MalformedResponse):
    """The peer is an HTTP server: it rejected the SCGI request as a garbled HTTP one."""

    exit_code = 8

    @classmethod
    def answered(cls, address: AddressLike, evidence: str) -> NotSCGI:
        """The error for an answer that ``http_server_answer`` recognised."""
        return cls(f"{_shown(address)} is an HTTP server, not an SCGI one: {evidence}; {_FIX}")


# An HTTP server reads an SCGI request ("70:CONTENT_LENGTH\0...") as a request line it
# cannot parse.  nginx answers 400 at once; Apache answers 408 when its read timeout
# fires; others wait for a line end that never comes (the timeout hint is for those).
_HTTP_REJECTIONS = frozenset({400, 405, 408, 414, 431, 501, 505})
_FIX = ("give the SCGI backend's address instead (the one in the front end's scgi_pass), "
        "or use an HTTP client such as curl")


def http_server_answer(start: bytes, head: ResponseHead) -> str | None:
    """Why an answer shows that the peer is an HTTP server, or None if it does not.

    ``start`` is the first bytes of the answer, ``head`` its parsed head.  An SCGI
    backend may answer with an ``HTTP/1.x`` status line too (CGI's NPH form), so it
    takes the three marks of an HTTP server's refusal: that status line, a status
    that refuses a malformed request, and a header that only HTTP servers add
    (``Server``, ``Connection``).
    """
    if not start.startswith(b"HTTP/") or head.status not in _HTTP_REJECTIONS:
        return None
    fields = {name.lower(): value for name, value in head.headers}
    if "server" not in fields and "connection" not in fields:
        return None
    line = start.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")[:80]
    server = f" (Server: {fields['server']})" if "server" in fields else ""
    return f"it answered {line!r}{server}, as HTTP servers answer bytes they cannot parse"


def no_answer_hint(address: AddressLike) -> str:
    """For a timeout before any byte of the answer: the peer may be an HTTP server."""
    return (f"if {_shown(address)} is an HTTP server rather than an SCGI one, it is still "
            f"waiting for the end of a request line, which SCGI never sends: {_FIX}")


def _shown(address: AddressLike) -> str:
    try:
        return str(parse_address(address))
    except AddressError:
        return repr(address)


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


# --- bodies ------------------------------------------------------------------------------

class _Body:
    """A request body of known length, read once: small bytes, a file, or chunks."""

    def __init__(self, source: BodyLike, content_length: int | None) -> None:
        self._spool: IO[bytes] | None = None
        self._sent_with_head = 0
        self.data: bytes | None = None
        self.file: IO[bytes] | None = None
        self.chunks: Iterable[bytes] | None = None
        if source is None:
            source = b""
        if isinstance(source, str):
            source = source.encode("utf-8")
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.length = len(self.data)
        elif hasattr(source, "read"):
            self.file = source  # type: ignore[assignment]
            self.length = content_length if content_length is not None else _remaining(source)
        elif isinstance(source, Iterable):
            if content_length is not None:
                self.chunks, self.length = source, content_length
            else:
                # The length must be sent first: spool the chunks once, then send the spool.
                spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
                for chunk in source:
                    spool.write(chunk)
                self.length = spool.tell()
                spool.seek(0)
                self._spool = self.file = spool
        else:
            raise TypeError(f"body must be bytes, a file or an iterable of bytes, not {source!r}")
        if content_length is not None and content_length != self.length:
            raise ValueError(f"content_length={content_length} but the body has {self.length}")

    def pieces(self) -> Iterator[bytes]:
        """The body after its first ``_SMALL_BODY`` bytes have been taken by ``first()``."""
        if self.file is not None:
            left = self.length - self._sent_with_head
            while left > 0:
                piece = self.file.read(min(CHUNK_SIZE, left))
                if not piece:
                    raise ValueError(f"body file ended {left} bytes before its announced length")
                left -= len(piece)
                yield piece
        elif self.chunks is not None:
            sent = 0
            for piece in self.chunks:
                if not piece:
                    continue
                sent += len(piece)
                if sent > self.length:
                    raise ValueError(f"body iterable gave more than content_length={self.length}")
                yield bytes(piece)
            if sent != self.length:
                raise ValueError(f"body iterable gave {sent} bytes, not {self.length}")

    def first(self) -> bytes:
        """Bytes to send in the same write as the head: a small body, or nothing."""
        if self.data is not None:
            return self.data
        if self.file is not None and self.length <= _SMALL_BODY:
            data = self.file.read(self.length)
            self._sent_with_head = len(data)
            return data
        return b""

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


def _remaining(file: Any) -> int:
    """Bytes left in a file object from its position, without reading it."""
    try:
        size = os.fstat(file.fileno()).st_size
        return max(0, size - int(file.tell()))
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
        return int(end - here)
    except (AttributeError, OSError, io.UnsupportedOperation):
        raise ValueError("cannot tell the size of this body file: pass content_length=") from None


# --- the exchange, blocking -------------------------------------------------------------

def connect(address: AddressLike, timeout: float | None = DEFAULT_TIMEOUT) -> socket.socket:
    """A connected socket to the SCGI server at ``address``, or ``ConnectFailed``."""
    try:
        addr = parse_address(address)
        if addr.fd is not None:
            raise AddressError(f"{addr}: a client cannot connect to an fd:// address")
    except AddressError as exc:
        raise ConnectFailed(str(exc)) from None
    try:
        if addr.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(addr.path)
            except BaseException:
                sock.close()
                raise
        else:
            assert addr.host is not None and addr.port is not None
            sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except TimeoutError:
        raise RequestTimeout(f"connecting to {addr} timed out after {timeout} s") from None
    except socket.gaierror as exc:
        error = ConnectFailed(f"could not resolve host {addr.host!r}: {exc.strerror}")
        error.exit_code = 6
        raise error from None
    except OSError as exc:
        raise ConnectFailed(f"could not connect to {addr}: {exc.strerror or exc}") from None
    return sock


class StreamedResponse:
    """A response whose body is read on demand; use it as a context manager.

    ``status``, ``reason`` and ``headers`` are known when ``stream()`` returns;
    ``iter_body()`` yields the body as it arrives and ``read()`` returns the rest.
    """

    def __init__(self, sock: socket.socket, parser: ResponseParser, head: ResponseHead,
                 environ: dict[str, str], timings: Timings, started: float,
                 method: str, timeout: float | None) -> None:
        self._sock: socket.socket | None = sock
        self._parser = parser
        self._started = started
        self._method = method
        self._timeout = timeout
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.environ = environ
        self.timings = timings
        self.bytes_read = 0

    header = Response.header
    header_list = Response.header_list

    def iter_body(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the body in pieces of at most about ``chunk_size`` bytes, then close."""
        try:
            while True:
                event = self._parser.next_event()
                if isinstance(event, Body):
                    self.bytes_read += len(event.data)
                    yield event.data
                elif isinstance(event, EndOfMessage):
                    break
                else:
                    self._parser.receive_data(self._recv(chunk_size))
            _check_complete(self.status, self.headers, self.bytes_read, self._method)
            self.timings.total = time.perf_counter() - self._started
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_body())

    def _recv(self, size: int) -> bytes:
        if self._sock is None:
            raise ClientError("the response was closed before its body was read")
        return receive(self._sock, size, self._timeout)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def receive(sock: socket.socket, size: int, timeout: float | None) -> bytes:
    """``sock.recv(size)``, with failures as ``RequestTimeout`` or ``ConnectionLost``."""
    try:
        return sock.recv(size)
    except TimeoutError:
        raise RequestTimeout(f"no answer from the server within {timeout} s") from None
    except OSError as exc:
        raise ConnectionLost(f"connection lost while reading the answer: {exc}") from None


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


def _head_error(exc: ResponseError) -> MalformedResponse:
    if "without a response" in str(exc):
        return EmptyResponse("the server closed the connection without answering")
    return MalformedResponse(str(exc))


def stream(
    address: AddressLike,
    uri: str = "/",
    method: str = "GET",
    headers: HeadersLike = None,
    body: BodyLike = b"",
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    content_length: int | None = None,
) -> StreamedResponse:
    """Send the request and read the response head; the body is read on demand."""
    environ = build_environ(uri, method, headers, env)
    payload = _Body(body, content_length)
    timings = Timings()
    started = time.perf_counter()
    try:
        sock = connect(address, timeout)
        timings.connect = time.perf_counter() - started
        try:
            _send(sock, environ, payload, timeout)
            parser = ResponseParser()
            head = _receive_head(sock, parser, timeout, address)
            timings.first_byte = time.perf_counter() - started
        except BaseException:
            sock.close()
            raise
    finally:
        payload.close()
    environ["CONTENT_LENGTH"] = str(payload.length)
    return StreamedResponse(sock, parser, head, environ, timings, started, method, timeout)


def request(
    address: AddressLike,
    uri: str = "/",
    method: str = "GET",
    headers: HeadersLike = None,
    body: BodyLike = b"",
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    content_length: int | None = None,
) -> Response:
    """Send one request to the SCGI server at ``address`` and return its whole answer.

    ``address`` is ``host:port``, ``[v6]:port``, ``unix:/path`` or a tuple.
    ``headers`` are HTTP request headers (turned into ``HTTP_*`` variables as
    nginx does); ``env`` adds or overrides raw variables.  ``body`` is bytes, a
    file object or an iterable of bytes; its size becomes CONTENT_LENGTH.
    ``timeout`` is the longest wait for any one step (connect, send, receive).
    """
    with stream(address, uri, method, headers, body, env, timeout, content_length) as answer:
        data = answer.read()
        return Response(answer.status, answer.reason, answer.headers, data,
                        answer.environ, answer.timings)


def _send(sock: socket.socket, environ: dict[str, str], body: _Body,
          timeout: float | None) -> None:
    head = encode_request(environ, body.length)
    try:
        sock.sendall(head + body.first())
        for piece in body.pieces():
            sock.sendall(piece)
    except TimeoutError:
        raise RequestTimeout(f"the server did not read the request within {timeout} s") from None
    except (BrokenPipeError, ConnectionResetError):
        # The server may answer before reading the whole body (413, say): read that answer.
        pass
    except OSError as exc:
        raise ConnectionLost(f"connection lost while sending the request: {exc}") from None


def _receive_head(sock: socket.socket, parser: ResponseParser,
                  timeout: float | None, address: AddressLike) -> ResponseHead:
    start = b""  # the first bytes of the answer: do they begin an HTTP status line?
    while True:
        try:
            event = parser.next_event()
        except ResponseError as exc:
            raise _head_error(exc) from None
        if isinstance(event, ResponseHead):
            _refuse_http_server(address, start, event)
            return event
        assert event is NEED_DATA
        try:
            data = receive(sock, CHUNK_SIZE, timeout)
        except RequestTimeout as exc:
            if start:
                raise
            raise RequestTimeout(f"{exc}; {no_answer_hint(address)}") from None
        start += data[: _START - len(start)]
        parser.receive_data(data)


_START = 64  # bytes of an answer kept to recognise an HTTP server's status line


def _refuse_http_server(address: AddressLike, start: bytes, head: ResponseHead) -> None:
    evidence = http_server_answer(start, head)
    if evidence is not None:
        raise NotSCGI.answered(address, evidence)


# --- the exchange, asyncio --------------------------------------------------------------

async def arequest(
    address: AddressLike,
    uri: str = "/",
    method: str = "GET",
    headers: HeadersLike = None,
    body: bytes | str | AsyncIterator[bytes] | Iterable[bytes] | IO[bytes] | None = b"",
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    content_length: int | None = None,
) -> Response:
    """``request`` for asyncio: the same arguments, the same ``Response``.

    ``timeout`` bounds the whole exchange.
    """
    environ = build_environ(uri, method, headers, env)
    source: _Body | AsyncIterator[bytes]
    if isinstance(body, AsyncIterator):
        if content_length is None:
            raise ValueError("an async iterable body needs content_length=")
        source, length = body, content_length
    else:
        source = _Body(body, content_length)
        length = source.length
    timings = Timings()
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(
            _aexchange(address, environ, source, length, method, timings, started), timeout
        )
    except asyncio.TimeoutError:
        raise RequestTimeout(f"no complete answer within {timeout} s") from None
    finally:
        if isinstance(source, _Body):
            source.close()


async def _aexchange(address: AddressLike, environ: dict[str, str],
                     body: _Body | AsyncIterator[bytes], length: int, method: str,
                     timings: Timings, started: float) -> Response:
    try:
        addr = parse_address(address)
    except AddressError as exc:
        raise ConnectFailed(str(exc)) from None
    try:
        if addr.path is not None:
            reader, writer = await asyncio.open_unix_connection(addr.path)
        else:
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
    except OSError as exc:
        raise ConnectFailed(f"could not connect to {addr}: {exc.strerror or exc}") from None
    timings.connect = time.perf_counter() - started
    try:
        head = encode_request(environ, length)
        try:
            if isinstance(body, _Body):
                writer.write(head + body.first())
                for piece in body.pieces():
                    writer.write(piece)
                    await writer.drain()
            else:
                writer.write(head)
                sent = 0
                async for piece in body:
                    sent += len(piece)
                    writer.write(piece)
                    await writer.drain()
                if sent != length:
                    raise ValueError(f"body gave {sent} bytes, not content_length={length}")
            await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        parser = ResponseParser()
        response_head: ResponseHead | None = None
        chunks: list[bytes] = []
        start = b""
        while True:
            try:
                event = parser.next_event()
            except ResponseError as exc:
                raise _head_error(exc) from None
            if isinstance(event, ResponseHead):
                _refuse_http_server(address, start, event)
                response_head = event
                timings.first_byte = time.perf_counter() - started
            elif isinstance(event, Body):
                chunks.append(event.data)
            elif isinstance(event, EndOfMessage):
                break
            else:
                try:
                    data = await reader.read(CHUNK_SIZE)
                    start += data[: _START - len(start)]
                    parser.receive_data(data)
                except OSError as exc:
                    raise ConnectionLost(f"connection lost while reading: {exc}") from None
        assert response_head is not None
        data = b"".join(chunks)
        _check_complete(response_head.status, response_head.headers, len(data), method)
        timings.total = time.perf_counter() - started
        environ["CONTENT_LENGTH"] = str(length)
        return Response(response_head.status, response_head.reason, response_head.headers,
                        data, environ, timings)
    finally:
        writer.close()
