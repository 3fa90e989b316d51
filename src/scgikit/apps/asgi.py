"""ASGI 3.0 on a parsed SCGI request: the ``http`` scope, one request's cycle, lifespan.

How it works.  ``http_scope`` turns the front end's variables into the scope by the
same pure rules as the WSGI environ (``request.py``): the path percent-decoded as
UTF-8 and including ``root_path`` (SCRIPT_NAME, else ``--script-name``), headers as
lower-case bytes with cookie lines merged, and every variable the front end sent
kept under ``scope["extensions"]["scgi"]``.

A ``Cycle`` runs one request over a ``Channel``: the small interface a worker model
gives it (read a piece of the body, write bytes, send a file, and ``finish`` once
the response is over).  It knows nothing of sockets or event loops.

- The body is *pulled*: ``receive()`` reads from the connection only when the app
  asks, so an upload the app consumes slowly waits in the kernel's buffers (TCP's
  own flow control holds the sender back) and is never gathered whole here.  The
  bytes that came with the head (a body up to ``--body-buffer-size`` arrives whole
  before the app starts) are the first ``http.request``.  Every read shares the
  ``--body-timeout`` deadline.  After the body, ``receive()`` waits for the front
  end to close (``http.disconnect``); once the response is complete it returns
  ``http.disconnect`` at once, as uvicorn does.
- The head is checked as the WSGI adapter checks it and held back until the first
  body bytes, which it goes out with in one system call (the CGI ``Status:`` form).
  It carries ``X-Accel-Buffering: no`` when the answer streams: decided at the first
  ``http.response.body`` (``streaming.py``).
- ``send()`` after the front end is gone raises ``ClientDisconnected``, an
  ``OSError``, as ASGI spec 2.4 asks (and uvicorn does since 0.27).
- An app that fails before any byte went out is answered 500 (408 after its body
  timed out) and logged with its traceback; after, the response is cut short.

``Lifespan`` runs the app's lifespan scope for one worker: startup before the
worker says it is ready, shutdown when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any, NoReturn, Protocol, cast

from ..accelerator import speedups
from ..protocol import error_response, reason_phrase
from .loader import AppImportError
from .request import header_pairs, is_https, raw_path, request_target, split_path
from .streaming import answer_heads
from .wsgi import InvalidResponse, encode_head

__all__ = ["ASGIAdapter", "Channel", "ClientDisconnected", "Cycle", "DeadlinePassed",
           "Lifespan", "http_scope", "http_scope_pure"]

log = logging.getLogger("scgikit")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The most body bytes one ``http.request`` message carries.
BODY_CHUNK = 128 * 1024
_NO_DEADLINE = float("inf")
_PORT_DIGITS = 18  # the most a port may have; the C scope adds up as many itself
_HTTP_VERSIONS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2.0": "2", "HTTP/2": "2",
                  "HTTP/3.0": "3", "HTTP/3": "3"}


class ClientDisconnected(OSError):
    """``send()`` after the front end closed the connection (ASGI spec 2.4)."""


class DeadlinePassed(TimeoutError):
    """A channel's read or write did not finish by its deadline."""


class Channel(Protocol):
    """One connection as a request sees it; a worker model implements it."""

    async def read(self, size: int, deadline: float) -> bytes:
        """Up to ``size`` bytes once some have arrived; ``b""`` at the end of the stream or
        once the response is finished.  Raises ``DeadlinePassed`` at ``deadline``
        (``time.monotonic()``), ``OSError`` when the connection fails."""

    def write(self, head: bytes, data: bytes | bytearray | memoryview,
              last: bool = False) -> Awaitable[None] | None:
        """Send ``head`` then ``data`` (either may be empty) as far as the connection takes
        them now: None when all went, else an awaitable that sends the rest.  ``OSError``
        (raised, or from the awaitable) if it cannot.

        ``last``: these bytes end the response, nothing of the request is left unread,
        and ``finish`` comes next: they may be left for the close to send."""

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of the file ``fd`` from ``offset``; the bytes sent."""

    def finish(self, status: str, sent: int, unread: int, cut: bool) -> None:
        """The response is over: log it, end the connection (``unread`` body bytes are
        still in the socket; ``cut``: close at once, the answer is incomplete)."""

    #: The worker cancelled the app's run at --timeout: answered 504 if nothing was sent.
    timed_out: bool

    def served(self) -> None:
        """The app's run is over, whatever its end: ``finish`` with ``cut`` if nothing has
        finished the response yet (a failure of ours, or the run cancelled)."""


def http_scope_pure(variables: dict[str, str], script_name: str, server: tuple[str, int],
                    state: dict[str, Any]) -> Scope:
    """The ASGI ``http`` scope of a request; ``server`` is the default when the front end
    sends no SERVER_NAME/SERVER_PORT, ``state`` the lifespan state (copied).

    ``_speedups.http_scope`` gives the same result in C (``http_scope``).
    """
    get = variables.get
    # raw_path() and the query of request_target(), inline: this runs for every request.
    target = get("REQUEST_URI") or get("DOCUMENT_URI") or "/"
    raw, _, query = target.partition("?")
    if raw[:1] != "/":
        raw = raw_path(variables)  # absolute-form target
    if script_name or "PATH_INFO" in variables or "%" in raw or not raw.isascii():
        root, path = split_path(variables, script_name, encoding="utf-8")
        path = root + path  # ASGI's path includes root_path (as uvicorn's does)
    else:
        root, path = "", raw  # what split_path gives: nothing to decode or take off
    given = get("QUERY_STRING")
    if given is not None:
        query = given
    address = get("REMOTE_ADDR")
    port = _port(get("SERVER_PORT"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": _HTTP_VERSIONS.get(get("SERVER_PROTOCOL", ""), "1.1"),
        "method": get("REQUEST_METHOD") or "GET",
        "scheme": "https" if is_https(variables) else "http",
        "path": path,
        "raw_path": raw.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": root,
        "headers": header_pairs(variables),
        "client": (address, _port(get("REMOTE_PORT")) or 0) if address else None,
        "server": (get("SERVER_NAME") or get("SERVER_ADDR") or server[0],
                   server[1] if port is None else port),
        "state": state.copy(),
        "extensions": {"scgi": {"variables": variables}, "http.response.pathsend": {}},
    }


def _port(text: str | None) -> int | None:
    """A port the front end sent, or None where it sent none, or not a plain number
    (str.isdigit() takes "\xb2", which int() refuses, as it refuses 5000 digits)."""
    return int(text) if text and len(text) <= _PORT_DIGITS and text.isascii() \
        and text.isdigit() else None


ScopeBuilder = Callable[[dict[str, str], str, tuple[str, int], dict[str, Any]], Scope]


def c_http_scope(c: ModuleType) -> ScopeBuilder:
    """The C ``http_scope`` of the accelerator ``c``, given the pure pieces it calls."""
    c.setup_scope(http_scope_pure=http_scope_pure, http_versions=_HTTP_VERSIONS)
    return cast(ScopeBuilder, c.http_scope)


http_scope: ScopeBuilder = c_http_scope(speedups) if speedups else http_scope_pure


def _where(variables: dict[str, str]) -> str:
    return f"{variables.get('REQUEST_METHOD', '?')} {request_target(variables)}"


class ASGIAdapter:
    """Runs an ASGI app for each request a worker model hands it."""

    def __init__(self, app: ASGIApp, script_name: str, server: tuple[str, int],
                 body_timeout: float, state: dict[str, Any] | None = None,
                 front_end_buffering: bool = False) -> None:
        self.app = app
        self.script_name = script_name
        self.server = server
        self.body_timeout = body_timeout
        self.state = state if state is not None else {}
        self.front_end_buffering = front_end_buffering
        # Most apps answer most requests with the same head: reuse it, checked and encoded.
        self.last_head: tuple[Any, Any, str, bytes, bytes] = (None, None, "", b"", b"")

    def run(self, channel: Channel, variables: dict[str, str], length: int,
            prefix: bytes, deadline: float) -> Coroutine[Any, Any, None]:
        """Answer one ready request; ``prefix`` is the part of the body already received.

        Not a coroutine itself: what it returns is the cycle's, one frame fewer a request.
        A method, not ``__call__``: an instance's call goes through a slower slot.
        """
        cycle = Cycle(channel, self, variables, length, prefix, deadline)
        scope = http_scope(variables, self.script_name, self.server, self.state)
        return cycle.run(self.app, scope)

    def head(self, status: Any, headers: Any) -> tuple[str, bytes, bytes]:
        """The status line and the encoded heads for an answer that streams and for one
        known whole (``streaming.answer_heads``); ``InvalidResponse`` if they are bad."""
        last = self.last_head
        if status == last[0] and headers == last[1]:
            return last[2], last[3], last[4]
        if type(status) is not int:
            raise InvalidResponse(f"invalid status {status!r}: ASGI wants an int")
        line = f"{status} {reason_phrase(status)}".rstrip()
        checked, pairs = [], []
        for name, value in headers:
            if not isinstance(name, (bytes, bytearray)) or not isinstance(
                    value, (bytes, bytearray)):
                raise InvalidResponse(f"header {name!r}: {value!r} is not a pair of bytes")
            checked.append((bytes(name), bytes(value)))
            pairs.append((name.decode("latin-1"), value.decode("latin-1")))
        streaming, whole = answer_heads(encode_head(line, pairs), pairs,
                                        self.front_end_buffering)
        self.last_head = (status, checked, line, streaming, whole)
        return line, streaming, whole


class Cycle:
    """One request's ASGI exchange: the app's ``receive`` and ``send``, and its end."""

    __slots__ = ("channel", "adapter", "variables", "length", "left", "prefix", "deadline",
                 "status", "head", "whole_head", "sent", "complete", "disconnected", "broken",
                 "expired")

    def __init__(self, channel: Channel, adapter: ASGIAdapter, variables: dict[str, str],
                 length: int, prefix: bytes, deadline: float) -> None:
        self.channel = channel
        self.adapter = adapter
        self.variables = variables
        self.length = length
        self.left = length - len(prefix)  # body bytes still in the connection
        self.prefix: bytes | None = prefix  # None once given to the app
        self.deadline = deadline
        self.status = ""
        self.head: bytes | None = None  # encoded and not yet sent
        # The head for an answer known whole, until the first body message says which.
        self.whole_head: bytes | None = None
        self.sent = 0  # bytes sent, head included
        self.complete = False  # the response is over (sent, or given up on)
        self.disconnected = False  # receive() has reported http.disconnect
        self.broken = False  # a send failed: the front end is gone
        self.expired = False  # the body missed --body-timeout

    # --- receive ---------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.complete or self.disconnected:
            return {"type": "http.disconnect"}
        prefix = self.prefix
        if prefix is not None:
            self.prefix = None
            if prefix or not self.left:
                return {"type": "http.request", "body": prefix, "more_body": self.left > 0}
        if self.left:
            return await self._read_body()
        await self._wait_for_close()
        return {"type": "http.disconnect"}

    async def _read_body(self) -> Message:
        try:
            data = await self.channel.read(min(self.left, BODY_CHUNK), self.deadline)
        except DeadlinePassed:
            self.expired = self.disconnected = True
            log.warning("Bad request: client sent %d of %d body bytes within --body-timeout "
                        "%gs", self.length - self.left, self.length, self.adapter.body_timeout)
            return {"type": "http.disconnect"}
        except OSError as exc:
            log.info("Error reading a request body: %s", exc)
            self.disconnected = True
            return {"type": "http.disconnect"}
        if not data:
            if not self.complete:
                log.info("Client closed the connection with %d of %d body bytes unsent",
                         self.left, self.length)
            self.disconnected = True
            return {"type": "http.disconnect"}
        self.left -= len(data)
        return {"type": "http.request", "body": data, "more_body": self.left > 0}

    async def _wait_for_close(self) -> None:
        """After the body: wait until the front end closes (or the response is over)."""
        while not self.complete:
            try:
                # SCGI: the body is exactly CONTENT_LENGTH bytes; anything after is dropped.
                if not await self.channel.read(BODY_CHUNK, _NO_DEADLINE):
                    break
            except OSError:
                break
        self.disconnected = True

    # --- send ------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.broken:
            raise ClientDisconnected("the front end closed the connection")
        if self.complete:
            raise RuntimeError(f"ASGI message {kind!r} sent after the response was complete")
        if kind == "http.response.body":
            if not self.status:
                raise RuntimeError("http.response.body sent before http.response.start")
            more = message.get("more_body", False)
            if self.whole_head is not None:  # the first body message: streams, or whole
                if not more:
                    self.head = self.whole_head
                self.whole_head = None
            rest = self._write(message.get("body", b""), more, not more and not self.left)
            if rest is not None:
                await rest
            if not more:
                self._complete()
        elif kind == "http.response.start":
            if self.status:
                raise RuntimeError("http.response.start sent twice")
            self.status, self.head, self.whole_head = self.adapter.head(
                message["status"], message.get("headers", ()))
        elif kind == "http.response.pathsend":
            if not self.status:
                raise RuntimeError("http.response.pathsend sent before http.response.start")
            await self._pathsend(message["path"])
            self._complete()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")

    def _write(self, body: bytes, more: bool, last: bool = False) -> Awaitable[None] | None:
        """Send the head (if not sent yet) and ``body`` as far as the connection takes them
        now: None when all went (most answers: no coroutine of its own), else what sends
        the rest."""
        head = self.head
        if head is not None:
            if not body and more:
                return None  # the head waits for the first body bytes, to go out with them
            self.head = None
        elif not body:
            return None
        size = len(head or b"") + len(body)
        try:
            rest = self.channel.write(head or b"", body, last)
        except OSError as exc:
            self._broken(exc)
        if rest is not None:
            return self._write_rest(rest, size)
        self.sent += size
        return None

    async def _write_rest(self, rest: Awaitable[None], size: int) -> None:
        try:
            await rest
        except OSError as exc:
            self._broken(exc)
        self.sent += size

    def _broken(self, exc: OSError) -> NoReturn:
        self.broken = True
        raise ClientDisconnected(f"the front end closed the connection: {exc}") from None

    async def _pathsend(self, path: str) -> None:
        # Opening is the app's business: a missing file is an app error (a 500).
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if self.whole_head is not None:  # a file is known whole
                self.head, self.whole_head = self.whole_head, None
            rest = self._write(b"", False)  # the head
            if rest is not None:
                await rest
            try:
                self.sent += await self.channel.sendfile(file.fileno(), 0, size)
            except OSError as exc:
                self._broken(exc)

    def _complete(self) -> None:
        self.complete = True
        self.channel.finish(self.status, self.sent, self.left, cut=False)

    # --- the app's run ---------------------------------------------------------------

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        """Run the app; whatever it does, the response ends and the connection with it,
        and the channel hears ``served`` last."""
        try:
            try:
                await app(scope, self.receive, self.send)
            except ClientDisconnected as exc:
                log.info("Front end closed the connection during the response to %s: %s",
                         _where(self.variables), exc)
            except (Exception, asyncio.CancelledError) as exc:
                # A CancelledError that leaves the app (its own task cancelled: by itself,
                # or a timeout of its own) is its failure too: answered 500 if it can be.
                self._log_failure(exc)
            else:
                if not self.complete:
                    log.error("App error on %s: the app returned %s", _where(self.variables),
                              "before its response was complete" if self.sent or self.head
                              else "without a response")
            if not self.complete:
                await self._end_incomplete()
        except Exception:
            log.exception("Internal error serving a request")
        finally:
            self.channel.served()

    def _log_failure(self, exc: BaseException) -> None:
        where = _where(self.variables)
        if self.channel.timed_out and isinstance(exc, asyncio.CancelledError):
            return  # the worker said so
        if self.disconnected and not self.sent:
            # Most likely the app's reaction to the client's going away, said above.
            log.info("App ended with %s on %s after the client went away", repr(exc), where)
        elif isinstance(exc, InvalidResponse):
            log.error("App error on %s: %s", where, exc)
        elif self.complete:
            log.exception("App error on %s after its response", where)
        elif self.sent:
            log.exception("App error on %s; the response was cut short", where)
        else:
            log.exception("App error on %s", where)

    async def _end_incomplete(self) -> None:
        """The app is done and the response is not: a 500 (or 408) if nothing went out."""
        self.complete = True
        if self.sent or self.broken:
            self.channel.finish(self.status or "500", self.sent, self.left, cut=True)
            return
        status = 504 if self.channel.timed_out else 408 if self.expired else 500
        response = error_response(status)
        try:
            rest = self.channel.write(b"", response)
            if rest is not None:
                await rest
        except OSError:
            self.channel.finish(str(status), 0, self.left, cut=True)
            return
        self.channel.finish(str(status), len(response), self.left, cut=False)


class Lifespan:
    """The app's ASGI lifespan scope in one worker: ``startup`` then ``shutdown``.

    ``mode`` is ``--lifespan``: ``on`` makes any failure a failed start; ``auto``
    serves an app that raises or returns before ``lifespan.startup.complete``
    without lifespan (an app that does not support it), though an app that says
    ``lifespan.startup.failed`` still fails; ``off`` sends nothing.
    """

    def __init__(self, app: ASGIApp, mode: str, timeout: float) -> None:
        self.app = app
        self.mode = mode
        self.timeout = timeout or None  # for shutdown: the master kills us after it anyway
        self.state: dict[str, Any] = {}
        self.running = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except Exception as exc:
            self._outbox.put_nowait({"type": "ended", "error": exc})
        else:
            self._outbox.put_nowait({"type": "ended", "error": None})

    async def startup(self) -> None:
        """Run the startup; raises ``AppImportError`` when the app cannot serve."""
        if self.mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._main())
        self._inbox.put_nowait({"type": "lifespan.startup"})
        message = await self._outbox.get()
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.running = True
            return
        if kind == "lifespan.startup.failed":
            raise AppImportError(f"ASGI lifespan startup failed: "
                                 f"{message.get('message') or '(no message)'}")
        error = message.get("error")
        if kind != "ended":
            what = f"sent {kind!r}"
        else:
            what = "returned" if error is None else f"raised {error!r}"
        if self.mode == "on":
            if error is not None:
                log.error("ASGI lifespan startup raised", exc_info=error)
            raise AppImportError(f"--lifespan on: the app {what} instead of completing "
                                 f"its lifespan startup")
        log.debug("The app does not support ASGI lifespan (it %s); serving without it", what)

    async def shutdown(self) -> None:
        """Run the shutdown, if the startup ran; failures are logged."""
        if not self.running:
            return
        self.running = False
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(self._outbox.get(), self.timeout)
        except asyncio.TimeoutError:
            log.error("ASGI lifespan shutdown did not finish within %gs", self.timeout)
            return
        kind = message["type"]
        if kind == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", message.get("message") or "")
        elif kind == "ended" and message["error"] is not None:
            log.error("ASGI lifespan shutdown raised", exc_info=message["error"])
