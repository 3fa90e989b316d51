"""The exchange on a blocking socket: ``stream`` reads the head and leaves the body to be read
on demand (``StreamedResponse``), ``request`` reads it all."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping

from ..addresses import AddressError, AddressLike, parse_address
from ..protocol import NEED_DATA, Body, EndOfMessage, encode_request
from ..protocol import Response as ResponseHead
from .body import CHUNK_SIZE, BodyLike, RequestBody
from .errors import ClientError, ConnectFailed, ConnectionLost, RequestTimeout, no_answer_hint
from .message import DEFAULT_TIMEOUT, AnswerReader, HeadersLike, Response, Timings, build_environ

__all__ = ["StreamedResponse", "connect", "receive", "request", "stream"]


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

    def __init__(self, sock: socket.socket, reader: AnswerReader, head: ResponseHead,
                 environ: dict[str, str], timings: Timings, started: float,
                 timeout: float | None) -> None:
        self._sock: socket.socket | None = sock
        self._reader = reader
        self._started = started
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
            while not isinstance(event := self._reader.next_event(), EndOfMessage):
                if isinstance(event, Body):
                    self.bytes_read += len(event.data)
                    yield event.data
                else:
                    self._reader.feed(self._recv(chunk_size))
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
    payload = RequestBody(body, content_length)
    timings = Timings()
    started = time.perf_counter()
    try:
        sock = connect(address, timeout)
        timings.connect = time.perf_counter() - started
        try:
            _send(sock, environ, payload, timeout)
            reader = AnswerReader(address, method)
            head = _receive_head(sock, reader, timeout)
            timings.first_byte = time.perf_counter() - started
        except BaseException:
            sock.close()
            raise
    finally:
        payload.close()
    environ["CONTENT_LENGTH"] = str(payload.length)
    return StreamedResponse(sock, reader, head, environ, timings, started, timeout)


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


def _send(sock: socket.socket, environ: dict[str, str], body: RequestBody,
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


def _receive_head(sock: socket.socket, reader: AnswerReader,
                  timeout: float | None) -> ResponseHead:
    while not isinstance(event := reader.next_event(), ResponseHead):
        assert event is NEED_DATA
        try:
            reader.feed(receive(sock, CHUNK_SIZE, timeout))
        except RequestTimeout as exc:
            if reader.start:
                raise
            raise RequestTimeout(f"{exc}; {no_answer_hint(reader.address)}") from None
    return event
