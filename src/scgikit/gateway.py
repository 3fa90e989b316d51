"""A development HTTP gateway: HTTP/1.1 in, SCGI out, as nginx with ``scgi_params`` does.

    scgikit gateway --listen 127.0.0.1:8000 --to 127.0.0.1:4000
    scgikit serve app:app --http 127.0.0.1:8000      (the same, started by the server)

For working in a browser without installing a front end; not for production
(one thread per connection, no TLS, no tuning).  HTTP parsing is h11's
(``pip install scgikit[http]``); the SCGI side is the protocol core, and the
variables come from ``scgikit.variables``, the same code the client uses.

Bodies: a request with Content-Length is streamed to the backend as it
arrives; a chunked request is spooled first (SCGI needs the length up front,
and nginx buffers the same way).  Answers are streamed back; h11 frames them
(Content-Length when the backend sent one, else chunked, else close).
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import IO, Any

from . import client
from .addresses import AddressError, AddressLike, parse_address
from .arguments import one_line
from .protocol import Response as ResponseHead
from .protocol import ResponseParser, encode_request, reason_phrase
from .variables import http_variables

HELP = "development only: an HTTP/1.1 gateway that forwards requests over SCGI"
DESCRIPTION = (
    "DEVELOPMENT TOOL. Accept HTTP/1.1 on --listen and forward each request over SCGI to --to,\n"
    "with the variables nginx sends with its stock scgi_params. For trying an app in a browser\n"
    "without a front end; put nginx, Apache or lighttpd in front of a production server."
)
EPILOG = """\
examples:
  scgikit gateway --to 127.0.0.1:4000             http://127.0.0.1:8000 -> SCGI on port 4000
  scgikit gateway --listen 127.0.0.1:8080 --to unix:/run/app.sock
  scgikit serve app:app --http 127.0.0.1:8000     the server starts a gateway itself

needs h11: pip install 'scgikit[http]'
"""

log = logging.getLogger("scgikit.gateway")

# Hop-by-hop headers: about this HTTP connection, not the answer (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
    b"trailer", b"upgrade",
})
_SPOOL_IN_MEMORY = 1024 * 1024
_CHUNK = 256 * 1024
_MAX_HEAD = 16 * 1024  # a request's head longer than this is answered 431
DEFAULT_LISTEN = "127.0.0.1:8000"


class GatewayError(Exception):
    """The gateway cannot start: h11 is missing, or the address is unusable."""


def _h11() -> Any:
    try:
        import h11
    except ImportError:
        raise GatewayError(
            "the HTTP gateway needs h11: pip install 'scgikit[http]'"
        ) from None
    return h11


def listen_gateway(listen: AddressLike) -> socket.socket:
    """The gateway's listening socket on ``listen`` (HOST:PORT); a ``GatewayError`` when
    it cannot be had (``scgikit serve --http`` binds it before it starts anything)."""
    try:
        where = parse_address(listen, default_port=8000)
    except AddressError as exc:
        raise GatewayError(str(exc)) from None
    if where.path is not None or where.fd is not None:
        raise GatewayError(f"the gateway listens on HOST:PORT, not {where}")
    sock = socket.socket(where.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(where.sockaddr)
    except OSError as exc:
        sock.close()
        raise GatewayError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def serve_gateway(listen: AddressLike | socket.socket, to: AddressLike, *,
                  ready: Callable[[str], object] | None = None,
                  server_name: str = "localhost", timeout: float = 60.0,
                  stop: threading.Event | None = None) -> None:
    """Accept HTTP on ``listen`` (an address, or a socket ``listen_gateway`` made) and
    forward to the SCGI server at ``to`` until ``stop``."""
    h11 = _h11()
    try:
        backend = parse_address(to)
    except AddressError as exc:
        raise GatewayError(str(exc)) from None
    sock = listen if isinstance(listen, socket.socket) else listen_gateway(listen)
    sock.settimeout(0.5)
    host, port = sock.getsockname()[:2]
    bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ready is not None:
        ready(bound)
    with sock:
        while stop is None or not stop.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            handler = _Connection(h11, conn, peer, backend, server_name, int(port), timeout)
            threading.Thread(target=handler.run, daemon=True).start()


class _Connection:
    """One HTTP/1.1 client connection, possibly several requests (keep-alive)."""

    def __init__(self, h11: Any, sock: socket.socket, peer: Any, backend: AddressLike,
                 server_name: str, server_port: int, timeout: float) -> None:
        self.h11 = h11
        self.sock = sock
        self.peer = peer
        self.backend = backend
        self.server_name = server_name
        self.server_port = server_port
        self.timeout = timeout
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        sock.settimeout(timeout)

    def run(self) -> None:
        h11 = self.h11
        try:
            while True:
                event = self._next_event()
                if isinstance(event, h11.ConnectionClosed) or event is None:
                    return
                if isinstance(event, h11.Request):
                    self._forward(event)
                if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                    return
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                else:
                    return
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._fail(status, _what_was_wrong(status, exc), f"bad HTTP request: {exc}")
        except (OSError, h11.LocalProtocolError) as exc:
            log.debug("connection from %s ended: %s", self.peer, exc)
        finally:
            self.sock.close()

    def _next_event(self) -> Any:
        h11 = self.h11
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.sock.recv(_CHUNK)
            except TimeoutError:
                return None
            self.conn.receive_data(data)

    def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def _fail(self, status: int, said: str, detail: str | None = None) -> None:
        """Answer ``status`` and close: ``said`` goes to the client, ``detail`` (which may
        name the backend or quote the request) to the log only."""
        log.info("%s: answering %d: %s", self.peer[0] if self.peer else "-", status,
                 detail or said)
        h11 = self.h11
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # the head is out: all we can do is close
        reason, headers, body = error_answer(status, said)
        try:
            self._send(h11.Response(status_code=status, headers=headers, reason=reason))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except (OSError, h11.LocalProtocolError):
            pass

    def _environ(self, request: Any) -> dict[str, str]:
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        return http_variables(
            request.method.decode("latin-1"), request.target.decode("latin-1"), headers,
            server_name=self.server_name, server_port=self.server_port,
            remote_addr=self.peer[0] if self.peer else "", remote_port=self.peer[1]
            if self.peer else 0, protocol="HTTP/" + request.http_version.decode("latin-1"),
        )

    def _forward(self, request: Any) -> None:
        h11 = self.h11
        environ = self._environ(request)
        length = _declared_length(request.headers)
        spool: IO[bytes] | None = None
        if self.conn.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        if length is None:  # chunked: the length must be known before SCGI can send
            spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
            for piece in self._body_pieces():
                spool.write(piece)
            length = spool.tell()
            spool.seek(0)
        try:
            backend = client.connect(self.backend, self.timeout)
        except client.ClientError as exc:
            self._drain_body(spool)
            self._fail(502, "the SCGI server cannot be reached", f"backend {self.backend}: {exc}")
            return
        with backend:
            try:
                backend.sendall(encode_request(environ, length))
                pieces: Iterator[bytes] = (
                    iter(lambda: spool.read(_CHUNK), b"") if spool else self._body_pieces()
                )
                for piece in pieces:
                    backend.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the backend answered early (413, say): relay that answer
            except TimeoutError:
                self._fail(504, "the SCGI server did not read the request in time",
                           f"backend {self.backend} did not read the request")
                return
            finally:
                if spool is not None:
                    spool.close()
            self._drain_body(None)
            self._relay(backend, request.method == b"HEAD")

    def _body_pieces(self) -> Iterator[bytes]:
        h11 = self.h11
        while True:
            event = self._next_event()
            if event is None:
                raise OSError("client stalled while sending its body")
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError("client closed the connection in the middle of its body")

    def _drain_body(self, spool: IO[bytes] | None) -> None:
        """Read what is left of the request body, so h11 can answer and go on."""
        if spool is not None:
            spool.close()
        if self.conn.their_state is self.h11.SEND_BODY:
            for _ in self._body_pieces():
                pass

    def _relay(self, backend: socket.socket, head_only: bool) -> None:
        h11 = self.h11
        parser = ResponseParser()
        events = _response_events(parser, backend, self.timeout)
        try:
            head = next(events)
        except client.RequestTimeout as exc:
            self._fail(504, "the SCGI server did not answer in time",
                       f"backend {self.backend}: {exc}")
            return
        except client.ClientError as exc:
            self._fail(502, "the SCGI server's answer is not a CGI response",
                       f"backend {self.backend}: {exc}")
            return
        assert isinstance(head, ResponseHead)
        headers = [(name, value) for name, value in head.headers
                   if name.lower().encode("latin-1") not in _HOP_BY_HOP]
        try:
            self._send(h11.Response(status_code=head.status, headers=headers,
                                    reason=(head.reason or _reason(head.status)).encode("latin-1")))
        except h11.LocalProtocolError as exc:
            self._fail(502, "the SCGI server's answer cannot be carried over HTTP",
                       f"backend {self.backend} sent an answer HTTP cannot carry: {exc}")
            return
        no_body = head_only or head.status in (204, 304) or head.status < 200
        try:
            for piece in events:
                if not no_body and isinstance(piece, bytes):
                    self._send(h11.Data(data=piece))
        except client.ClientError as exc:
            log.warning("backend %s: answer cut short: %s", self.backend, exc)
            raise OSError("backend answer cut short") from None
        self._send(h11.EndOfMessage())


def error_answer(status: int, said: str) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """The gateway's own answer for ``status``: its reason phrase, its headers and a body of
    one line of plain text, ``said`` after the status (``400 Bad Request: ...``)."""
    reason = _reason(status)
    body = f"{status} {reason}: {one_line(said)}\n".encode("ascii", "backslashreplace")
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body))), ("Connection", "close")]
    return reason.encode("ascii"), headers, body


def _reason(status: int) -> str:
    """The reason phrase for ``status``: the protocol core's, else the standard library's."""
    phrase = reason_phrase(status)
    if not phrase:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
    return phrase


# h11 quotes the bytes it could not parse ("illegal header line: bytearray(b'...')"):
# the client is told what was wrong, not its bytes echoed back.
_QUOTED = re.compile(r":? (?:b'|b\"|bytearray\().*", re.DOTALL)


def _what_was_wrong(status: int, exc: Exception) -> str:
    if status == 431:  # h11 says "Receive buffer too long"
        return f"the request's head is longer than {_MAX_HEAD} bytes"
    said = _QUOTED.sub("", str(exc)).strip() or "malformed request"
    return f"not an HTTP/1.1 request the gateway can read ({said})"[:200]


def _response_events(parser: ResponseParser, sock: socket.socket,
                     timeout: float) -> Iterator[ResponseHead | bytes]:
    """The backend's answer: its head, then body pieces, as they arrive."""
    from .protocol import Body, EndOfMessage, ResponseError

    while True:
        try:
            event = parser.next_event()
        except ResponseError as exc:
            raise client.MalformedResponse(str(exc)) from None
        if isinstance(event, ResponseHead):
            yield event
        elif isinstance(event, Body):
            yield event.data
        elif isinstance(event, EndOfMessage):
            return
        else:
            parser.receive_data(client.receive(sock, _CHUNK, timeout))


def _declared_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


# --- the command -------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help="where to accept HTTP (default %(default)s; loopback only unless "
                             "you say otherwise)")
    parser.add_argument("--to", default="127.0.0.1:4000", metavar="ADDRESS",
                        help="the SCGI server: host:port, [v6]:port or unix:/path "
                             "(default %(default)s)")
    parser.add_argument("--server-name", default="localhost",
                        help="SERVER_NAME to send (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="longest wait on a client or the backend (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [gateway] %(message)s")
    try:
        serve_gateway(
            args.listen, args.to, server_name=args.server_name, timeout=args.timeout,
            ready=lambda address: print(
                f"HTTP gateway (development only) at: http://{address} -> {args.to}",
                file=sys.stderr, flush=True),
        )
    except GatewayError as exc:
        print(f"scgikit gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
