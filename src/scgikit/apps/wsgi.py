"""WSGI (PEP 3333) on a parsed SCGI request.

The environ is a copy of a base dict prepared once per worker, updated with
the front end's variables.  SCRIPT_NAME and PATH_INFO follow what the front
ends send: nginx sends neither, Apache's mod_proxy_scgi sends the whole path
as SCRIPT_NAME, lighttpd sends both.  When PATH_INFO is absent it is derived
from REQUEST_URI (else DOCUMENT_URI), percent-decoded, minus ``--script-name``.

The head is held back until the first non-empty body chunk (or the end), and
sent with it in one system call.  Two heads are ready for it (``new_heads``): one
with ``X-Accel-Buffering: no`` for an answer that streams, sent unless the result
turns out to be known whole (a list or tuple, a ``wsgi.file_wrapper``:
``streaming.py``).

The environ build and the exchange (``start_response``, ``write``, the loop over
the app's result) have a C twin in ``scgikit._speedups``, used where the
accelerator runs (``accelerator.py`` decides).
The pure ``environ_pure`` and ``_Exchange`` stay the reference: the C code calls
them for every case it does not handle itself, and the tests compare the two.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import MethodType, ModuleType, TracebackType
from typing import IO, Any, Protocol

from ..accelerator import speedups
from ..connection.sockets import (
    DONTWAIT,
    Connection,
    arm_timeout,
    send_all,
    sendall_within_timeout,
)
from ..connection.streams import Body, BufferedBody, whole_body
from ..protocol import ProtocolError, error_response, format_response_head
from .request import is_https, merge_cookie, split_path
from .streaming import answer_heads

log = logging.getLogger("scgikit")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_BAD_VALUE = re.compile(r"[\r\n\0]").search
_STATUS = re.compile(r"[1-9]\d\d(?: [^\r\n\0]*)?\Z").match
# A first chunk up to this size is joined to the head; a bigger one goes beside it (sendmsg).
_SMALL_CHUNK = 16 * 1024
# The last bytes of an answer whose connection closes next: the kernel holds them for the
# close, and over TCP sends them with the FIN (``_Exchange.respond``).
# A plain int, as sockets.DONTWAIT: socket's flags are enum.IntFlag members.
_LAST = int(getattr(socket, "MSG_MORE", 0))
_SENDFILE_BLOCK = 1 << 30


class ClientGone(Exception):
    """The front end closed the connection while we were answering."""


class InvalidResponse(Exception):
    """The app gave a status or header that cannot go on the wire."""


class FileWrapper:
    """``wsgi.file_wrapper``: lets the server send a real file with ``sendfile``."""

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        while block := self.filelike.read(self.blksize):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close:
            close()


def _fileno(wrapper: FileWrapper) -> int | None:
    try:
        return wrapper.filelike.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def encode_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    """Check the app's status and headers and encode them; ``InvalidResponse`` if they are bad."""
    if type(status) is not str or not _STATUS(status):
        raise InvalidResponse(f"invalid status {status!r}")
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise InvalidResponse(f"header {name!r}: {value!r} is not a pair of str")
        if not _TOKEN(name) or _BAD_VALUE(value):
            raise InvalidResponse(f"invalid header {name!r}: {value!r}")
    try:
        return format_response_head(status, headers)
    except UnicodeEncodeError:
        raise InvalidResponse(f"headers of {status!r} are not latin-1") from None


HeadEntry = tuple[Any, Any, bytes, bytes]


def new_heads(adapter: WSGIAdapter, status: str, headers: list[tuple[str, str]]) -> HeadEntry:
    """Check and encode a head the adapter has not cached: ``(status, headers, streaming,
    whole)``, the heads to send when the answer streams and when its body is known whole
    (``streaming.answer_heads``), kept as the adapter's ``last_head``.

    The pure exchange and the C one (on a cache miss) both call it.
    """
    head = encode_head(status, headers)
    streaming, whole = answer_heads(head, headers, adapter.front_end_buffering)
    entry = (status, list(headers), streaming, whole)
    adapter.last_head = entry
    return entry


def known_whole(exchange: Exchange) -> None:
    """The app's result is known whole (a list, a tuple, a file): the head still to be sent
    becomes the one without ``X-Accel-Buffering`` (``streaming.py``)."""
    if exchange.head is not None and exchange.whole_head is not None:
        exchange.head = exchange.whole_head


def environ_pure(base: dict[str, Any], variables: dict[str, str], body: Body,
                 script_name: str) -> dict[str, Any]:
    """The WSGI environ: ``base`` updated with the front end's ``variables``.

    ``_speedups.wsgi_environ`` gives the same result in C (``build_environ``).
    """
    environ = base.copy()
    environ.update(variables)
    environ["wsgi.input"] = body
    if "PATH_INFO" not in variables:
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = split_path(variables, script_name)
    if is_https(variables):
        environ["wsgi.url_scheme"] = "https"
    # The body is exactly CONTENT_LENGTH bytes whatever the HTTP framing was,
    # and PEP 3333 keeps CONTENT_TYPE/LENGTH out of HTTP_*.
    if "HTTP_TRANSFER_ENCODING" in variables:
        del environ["HTTP_TRANSFER_ENCODING"]
    if "HTTP_CONTENT_LENGTH" in variables:
        del environ["HTTP_CONTENT_LENGTH"]
    if "HTTP_CONTENT_TYPE" in variables:
        environ.setdefault("CONTENT_TYPE", environ.pop("HTTP_CONTENT_TYPE"))
    cookie = variables.get("HTTP_COOKIE")
    if cookie is not None and ", " in cookie:
        environ["HTTP_COOKIE"] = merge_cookie(cookie, variables)
    return environ


class Exchange(Protocol):
    """What the adapter needs of an exchange: ``_Exchange``, or the C ``_speedups.Exchange``."""

    sock: Connection
    timeout: float | None
    status: str | None
    head: bytes | None
    whole_head: bytes | None
    sent: int
    closing: bool
    waited: bool

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def respond(self, result: Iterable[bytes]) -> None: ...
    def sendfile(self, wrapper: FileWrapper) -> None: ...


class _Exchange:
    """One request's response state: ``start_response`` and ``write`` live here."""

    __slots__ = ("sock", "timeout", "status", "head", "whole_head", "sent", "adapter", "closing",
                 "waited")

    def __init__(self, sock: Connection, adapter: WSGIAdapter, timeout: float | None) -> None:
        self.sock = sock
        self.timeout = timeout  # per send call, once one cannot finish at once
        self.status: str | None = None
        self.head: bytes | None = None  # encoded head not yet sent
        # The head to send instead if the result is known whole (``known_whole``).
        self.whole_head: bytes | None = None
        self.sent = 0  # bytes sent so far, head included
        self.adapter = adapter  # its last_head: (status, headers, head) of a previous response
        # The connection closes once the answer is sent (the body came whole): the last
        # bytes of a list or tuple result may wait in the kernel for the close.
        self.closing = False
        # A send had to wait: the connection carries its send timeout, and the rest of the
        # answer goes out with sends that wait (a big answer to a front end that reads
        # slower than we write: trying each chunk without waiting first would only fill
        # what it has just read, one more system call a chunk).
        self.waited = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        last = self.adapter.last_head  # read once: threads replace it whole, never change it
        if status == last[0] and headers == last[1]:
            # Most apps answer most requests with the same head: reuse it, checked and encoded.
            self.head, self.whole_head = last[2], last[3]
            self.status = status
            return self.write
        _, _, self.head, self.whole_head = new_heads(self.adapter, status, headers)
        self.status = status
        return self.write

    def write(self, data: bytes) -> None:
        _write(self, data, 0)

    def finish(self) -> None:
        if self.head is not None:
            self.write(b"")

    def respond(self, result: Iterable[bytes]) -> None:
        """Send the app's result: each non-empty chunk, then the head if none took it.

        A list or tuple on a connection that closes next: its last chunk (or the head
        alone) goes with ``MSG_MORE``.  The kernel then holds its last partial segment
        for the close, and over TCP the data and the FIN leave in one segment, which the
        front end acknowledges once.  (A list has no ``close()`` to run in between.)
        A list or tuple is known whole: its head is the one for whole answers.
        """
        if type(result) in (list, tuple):
            known_whole(self)
        if self.closing and type(result) in (list, tuple):
            chunks: Sequence[bytes] = result  # type: ignore[assignment]
            if len(chunks) == 1 and self.head is not None:
                # The usual answer: the head and one chunk (if not empty), in one send.
                _write(self, chunks[0] or b"", _LAST)
                return
            index = 0
            while index < len(chunks):  # the app may still hold the list and change it
                chunk = chunks[index]
                index += 1
                if chunk:
                    _write(self, chunk, _LAST if index == len(chunks) else 0)
            if self.head is not None:
                _write(self, b"", _LAST)
            return
        for chunk in result:
            if chunk:
                self.write(chunk)
        self.finish()

    def sendfile(self, wrapper: FileWrapper) -> None:
        self.finish()
        filelike = wrapper.filelike
        offset = filelike.tell()
        out, source = self.sock.fileno(), filelike.fileno()
        arm_timeout(self.sock, self.timeout)
        timeout = self.sock.gettimeout()  # None: the kernel's SO_SNDTIMEO bounds each call
        try:
            while True:
                try:
                    sent = os.sendfile(out, source, offset, _SENDFILE_BLOCK)
                except BlockingIOError:
                    if timeout is None or not _writable(out, timeout):
                        raise ClientGone("send timed out") from None
                    continue
                if not sent:
                    break
                offset += sent
                self.sent += sent
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        finally:
            filelike.seek(offset)


def _write(exchange: Exchange, data: bytes, flags: int) -> None:
    """``exchange.write(data)``, the first send with ``flags``: the pure exchange's, and the
    C one's for what it leaves to Python (a chunk that is not bytes)."""
    if exchange.head is None and not exchange.sent:
        raise AssertionError("write() called before start_response()")
    if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
    head = exchange.head
    try:
        if head is None and exchange.waited:
            # The timeout is armed since the first wait: this send waits at once.
            sendall_within_timeout(exchange.sock, data, flags)
            waited = False  # exchange.waited is set already
        elif head is None:
            waited = send_all(exchange.sock, data, exchange.timeout, flags)
        elif len(data) <= _SMALL_CHUNK:
            exchange.head = None
            waited = send_all(exchange.sock, head + data, exchange.timeout, flags)
        else:
            # Head and a big first chunk in one system call, neither copied.
            exchange.head = None
            waited = _send_both(exchange.sock, head, data, exchange.timeout, flags)
    except OSError as exc:
        raise ClientGone(str(exc)) from None
    if waited:
        exchange.waited = True
    exchange.sent += len(head) + len(data) if head is not None else len(data)


def _writable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(timeout * 1000))


def _send_both(sock: Connection, head: bytes, data: bytes | bytearray | memoryview,
               timeout: float | None, flags: int = 0) -> bool:
    """``head`` then ``data``: one ``sendmsg`` without waiting (with ``flags``), then the
    rest within ``timeout``.  True if it had to wait (as ``send_all``)."""
    try:
        sent = sock.sendmsg((head, data), (), DONTWAIT | flags)
    except BlockingIOError:
        sent = 0
    if sent < len(head) + len(data):
        _send_rest(sock, head, data, sent, timeout)
        return True
    return False


def _send_rest(sock: Connection, head: bytes, data: bytes | bytearray | memoryview, sent: int,
               timeout: float | None) -> None:
    """The rest of ``head`` then ``data`` after ``sent`` bytes went out, within ``timeout``.

    The C exchange's way on, once its send could not take everything: a head with a
    small chunk still goes in one ``sendall``, as the pure write's ``send_all`` would.
    """
    arm_timeout(sock, timeout)
    if sent < len(head):
        if len(data) <= _SMALL_CHUNK:
            sendall_within_timeout(sock, head[sent:] + data)
        else:
            sendall_within_timeout(sock, head[sent:])
            sendall_within_timeout(sock, data)
    else:
        with memoryview(data) as view:
            sendall_within_timeout(sock, view[sent - len(head):])


class WSGIAdapter:
    """Runs a WSGI app for each request a worker receives."""

    raw = False

    def __init__(self, app: WSGIApp, script_name: str, server_name: str, server_port: str,
                 timeout: float | None = None, multithread: bool = False,
                 front_end_buffering: bool = False) -> None:
        self.app = app
        self.timeout = timeout  # what a send that cannot finish at once may wait, per call
        self.script_name = script_name
        self.front_end_buffering = front_end_buffering
        self.last_head: HeadEntry = (None, None, b"", b"")
        self.base: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": script_name,
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        #: answer_whole(sock, data, variables, length, start): answer a request whose
        #: body is all in ``data`` from ``start`` (most are), as calling the adapter with
        #: that body as a file does.  With the C accelerator, ``_speedups.answer_whole``
        #: does the body file, the environ, the app, its answer and the result's
        #: ``close()`` with no Python frame of ours, and calls ``failed`` on an error.
        self.answer_whole: AnswerWhole = (
            MethodType(answer_whole_c, self) if answer_whole_c else self._answer_whole)

    def __call__(self, sock: Connection, variables: dict[str, str], length: int,
                 body: Body, closing: bool = False) -> tuple[str, int]:
        """Answer one request; returns the status line and the bytes sent.

        ``closing``: nothing of the request is left unread, and the caller closes the
        connection once it has counted and logged the answer (``Exchange.respond`` uses
        ``MSG_MORE``).
        """
        exchange = new_exchange(sock, self, self.timeout)
        if closing:
            exchange.closing = True
        try:
            environ = build_environ(self.base, variables, body, self.script_name)
            result = self.app(environ, exchange.start_response)
            try:
                if type(result) is FileWrapper:
                    answer_file(exchange, result)
                else:
                    exchange.respond(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:
            return self.failed(exchange, variables, exc)
        return exchange.status or "500", exchange.sent

    def _answer_whole(self, sock: Connection, data: bytes | bytearray,
                      variables: dict[str, str], length: int, start: int) -> tuple[str, int]:
        return self(sock, variables, length, whole_body(data, length, start), closing=True)

    def failed(self, exchange: Exchange, variables: dict[str, str],
               exc: Exception) -> tuple[str, int]:
        """What an exception from the app or from sending its answer becomes.

        Logged as whose fault it is, and answered 500 (or the client error's status)
        if nothing was sent yet; otherwise the answer is cut short.
        """
        if isinstance(exc, ClientGone):
            log.info("Front end closed the connection during the response: %s", exc)
            return exchange.status or "500", exchange.sent
        if isinstance(exc, ProtocolError):
            log.warning("Bad request from %s: %s", variables.get("REMOTE_ADDR", "?"), exc)
            return _fail(exchange, exc.status)
        if isinstance(exc, InvalidResponse):
            log.error("App error on %s: %s", _where(variables), exc)
        else:
            log.error("App error on %s", _where(variables), exc_info=exc)
        return _fail(exchange, 500)


def answer_file(exchange: Exchange, result: FileWrapper) -> None:
    """Send a ``wsgi.file_wrapper`` result: with sendfile if it wraps a real file.

    A file is known whole: nginx may buffer it (``streaming.py``)."""
    known_whole(exchange)
    if _fileno(result) is not None:
        exchange.sendfile(result)
    else:
        exchange.respond(result)


def _where(variables: dict[str, str]) -> str:
    method = variables.get("REQUEST_METHOD", "?")
    return f"{method} {variables.get('REQUEST_URI') or variables.get('DOCUMENT_URI', '?')}"


def _fail(exchange: Exchange, status: int) -> tuple[str, int]:
    """Answer ``status`` if nothing was sent yet; otherwise the response is cut short."""
    if exchange.sent:
        return exchange.status or str(status), exchange.sent
    response = error_response(status)
    try:
        send_all(exchange.sock, response, exchange.timeout)
    except OSError:
        return str(status), 0
    return str(status), len(response)


EnvironBuilder = Callable[[dict[str, Any], dict[str, str], Body, str], dict[str, Any]]
ExchangeFactory = Callable[[Connection, WSGIAdapter, "float | None"], Exchange]
AnswerWhole = Callable[[Connection, "bytes | bytearray", dict[str, str], int, int],
                       tuple[str, int]]


def c_pieces(c: ModuleType) -> tuple[EnvironBuilder, ExchangeFactory,
                                      Callable[..., tuple[str, int]]]:
    """The C accelerator ``c``'s environ builder, exchange and answer_whole, given the pure
    pieces they call.

    Called at import where the accelerator runs; tests call it to compare the two.
    """
    c.setup_wsgi(environ_pure=environ_pure, split_path=split_path,
                 merge_cookie=merge_cookie, new_heads=new_heads,
                 send_rest=_send_rest, client_gone=ClientGone, pure_exchange=_Exchange,
                 socket_type=Connection, buffered_body=BufferedBody,
                 file_wrapper=FileWrapper, answer_file=answer_file)
    return c.wsgi_environ, c.Exchange, c.answer_whole


build_environ: EnvironBuilder
new_exchange: ExchangeFactory
answer_whole_c: Callable[..., tuple[str, int]] | None
build_environ, new_exchange, answer_whole_c = (
    c_pieces(speedups) if speedups else (environ_pure, _Exchange, None))
