"""``scgikit request`` (curl's habits, over SCGI) and ``scgi-test`` (the classic raw tool).

Exit codes are curl's where curl has one: 6 unknown host, 7 connection refused,
8 malformed answer (an HTTP server's too: the address is not SCGI), 22 HTTP status
>= 400 with ``--fail``, 23 output write error, 26 body file unreadable, 28 timeout,
52 empty answer, 56 connection lost.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import IO

from . import client
from .addresses import DEFAULT_PORT
from .arguments import ArgumentParser

HELP = "send one SCGI request and print the answer (like curl)"
DESCRIPTION = (
    "Send one request to an SCGI server, with the variables nginx would send for the\n"
    "same HTTP request, and write the response body to stdout as raw bytes."
)
EPILOG = """\
examples:
  scgikit request /                          GET / from localhost:4000
  scgikit request /run/app.sock /health      a unix socket (or unix:/run/app.sock)
  scgikit request 127.0.0.1:9000 '/search?q=scgi' -i
  scgikit request /form -d 'name=value'      POST a form (application/x-www-form-urlencoded)
  scgikit request /upload -d @photo.jpg -H 'Content-Type: image/jpeg'
  scgikit request /api -X PUT -d @- < data.json
  scgikit request / -e HTTPS=on -v          set a raw variable; show what was sent
  scgikit request / -f -w                    exit 22 on an error status; print timings

exit codes (curl's): 6 unknown host, 7 cannot connect, 8 malformed answer (an HTTP
server's too: ADDRESS is not an SCGI server), 22 status >= 400 with --fail, 26 cannot
read the -d file, 28 timeout, 52 empty answer.
"""

DEFAULT_ADDRESS = f"localhost:{DEFAULT_PORT}"


class UsageError(client.ClientError):
    """The command line asks for something that cannot be sent."""

    exit_code = 2


class BodyReadError(client.ClientError):
    """The file named by ``-d @file`` cannot be read."""

    exit_code = 26


class OutputError(client.ClientError):
    """The answer cannot be written where ``-o`` says."""

    exit_code = 23


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="+", metavar="[ADDRESS] URI",
                        help=f"server address (default {DEFAULT_ADDRESS}; host:port, [v6]:port, "
                             "a unix socket as /path or unix:/path) and the request URI, "
                             "starting with '/'")
    parser.add_argument("-X", "--request", dest="method", metavar="METHOD",
                        help="request method (default GET, or POST with -d)")
    parser.add_argument("-H", "--header", dest="headers", action="append", default=[],
                        metavar="'NAME: VALUE'", help="add an HTTP request header (repeatable)")
    parser.add_argument("-d", "--data", action="append", default=[], metavar="DATA",
                        help="request body; @FILE reads a file, @- reads stdin; several -d are "
                             "joined with '&'")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set a raw SCGI variable, overriding the computed one (repeatable)")
    parser.add_argument("-i", "--include", action="store_true",
                        help="write the response head before the body")
    parser.add_argument("-I", "--head", action="store_true",
                        help="send a HEAD request and write only the response head")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the variables sent and the response head on stderr")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    parser.add_argument("-m", "--timeout", type=float, default=client.DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="longest wait for connecting or for any data (default %(default)s)")
    parser.add_argument("-f", "--fail", action="store_true",
                        help="exit 22, writing no body, when the status is 400 or more")
    parser.add_argument("-w", "--timing", action="store_true",
                        help="print connect, first-byte and total times to stderr")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:
        # stdout was closed (piped into head, say): stop quietly, as curl does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 23
    except client.ClientError as exc:
        print(f"scgikit request: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    if len(args.target) > 2:
        raise UsageError("expected [ADDRESS] URI, got " + " ".join(args.target))
    address, uri = args.target if len(args.target) == 2 else (DEFAULT_ADDRESS, args.target[0])
    if not uri.startswith("/"):
        raise UsageError(f"the URI must start with '/': {uri!r}")
    headers = [_header(text) for text in args.headers]
    env = dict(_variable(text) for text in args.env)
    body = b"&".join(_data(item) for item in args.data) if args.data else b""
    method = args.method or ("HEAD" if args.head else "POST" if args.data else "GET")
    if args.data and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl does
    try:
        environ_sent = client.build_environ(uri, method, headers, env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.verbose:
        environ_sent["CONTENT_LENGTH"] = str(len(body))
        for name in ("CONTENT_LENGTH", *sorted(set(environ_sent) - {"CONTENT_LENGTH"})):
            _err(f"> {name}={environ_sent[name]}")
        _err(">")

    with client.stream(address, uri, method, headers, body, env, args.timeout) as answer:
        head = _format_head(answer)
        if args.verbose:
            for line in head.decode("latin-1").splitlines():
                _err(f"< {line}")
        failed = args.fail and answer.status >= 400
        out = sys.stdout.buffer
        if args.output and not failed:
            try:
                out = open(args.output, "wb")
            except OSError as exc:
                raise OutputError(f"cannot write {args.output}: {exc.strerror}") from None
        try:
            if (args.include or args.head) and not failed:
                out.write(head)
            if not args.head and not failed:
                for chunk in answer.iter_body():
                    _write(out, chunk)
            out.flush()
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        if args.timing:
            t = answer.timings
            _err(f"connect: {t.connect * 1000:.3f} ms  first byte: {t.first_byte * 1000:.3f} ms"
                 f"  total: {(t.total or t.first_byte) * 1000:.3f} ms"
                 f"  status: {answer.status}  body: {answer.bytes_read} bytes")
        if failed:
            _err(f"scgikit request: the server answered {answer.status} {answer.reason}")
            return 22
    return 0


def _format_head(answer: client.StreamedResponse) -> bytes:
    lines = [f"Status: {answer.status} {answer.reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in answer.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write(out: IO[bytes], data: bytes) -> None:
    try:
        out.write(data)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the answer: {exc.strerror}") from None


def _header(text: str) -> tuple[str, str]:
    name, value = _pair(text, ":", "header must be 'Name: value'", bare_name=True)
    return name, value.strip()


def _variable(text: str) -> tuple[str, str]:
    return _pair(text, "=", "variable must be NAME=VALUE")


def _pair(text: str, separator: str, rule: str, bare_name: bool = False) -> tuple[str, str]:
    """``text`` split at its first ``separator``: a name (without blanks around it, where
    ``bare_name``), and a value."""
    name, sep, value = text.partition(separator)
    if sep and name and (name == name.strip() or not bare_name):
        return name, value
    raise UsageError(f"{rule}, not {text!r}")


def _data(item: str) -> bytes:
    if not item.startswith("@"):
        return item.encode("utf-8")
    path = item[1:]
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise BodyReadError(f"cannot read {path}: {exc.strerror}") from None


def _err(line: str) -> None:
    print(line, file=sys.stderr)


# --- scgi-test -----------------------------------------------------------------------

SCGI_TEST_EPILOG = """\
examples:
  scgi-test /your/uri/                  ask localhost:4000
  scgi-test --port 9000 '/search?q=1'
  scgi-test --unix /run/app.sock /

exit codes (curl's): 7 cannot connect, 8 an HTTP server answered (after its raw
answer), 28 timeout, 52 empty answer.
"""


def scgi_test(argv: Sequence[str] | None = None) -> int:
    """Send a GET for URI and print the whole answer, head and body, as the server sent it."""
    parser = ArgumentParser(
        prog="scgi-test",
        description="Print an SCGI server's raw answer to a GET request for URI.",
        epilog=SCGI_TEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("uri", metavar="URI", help="the request URI, starting with '/'")
    parser.add_argument("--host", default="localhost", help="server host (default localhost)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"server port (default {DEFAULT_PORT})")
    parser.add_argument("--unix", metavar="PATH", help="connect to a unix socket instead")
    parser.add_argument("-m", "--timeout", type=float, default=client.DEFAULT_TIMEOUT,
                        metavar="SECONDS", help="longest wait for any step")
    args = parser.parse_args(argv)
    if args.unix:
        address = f"unix:{args.unix}"
    elif ":" in args.host:
        address = f"[{args.host}]:{args.port}"
    else:
        address = f"{args.host}:{args.port}"
    try:
        return _raw_exchange(address, args.uri, args.timeout)
    except client.ClientError as exc:
        print(f"scgi-test: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _raw_exchange(address: str, uri: str, timeout: float) -> int:
    from .protocol import encode_request

    if not uri.startswith("/"):
        raise UsageError(f"the URI must start with '/': {uri!r}")
    environ = client.build_environ(uri)
    sock = client.connect(address, timeout)
    start = bytearray()  # the answer's head, to tell an HTTP server's refusal
    with sock:
        try:
            sock.sendall(encode_request(environ, 0))
        except OSError as exc:
            raise client.ConnectionLost(f"connection lost while sending: {exc}") from None
        out = sys.stdout.buffer
        while data := _receive(sock, timeout, address, waited=bool(start)):
            if len(start) < _HEAD_SEEN:
                start += data[: _HEAD_SEEN - len(start)]
            out.write(data)
        out.flush()
    if not start:
        raise client.EmptyResponse("the server closed the connection without answering")
    evidence = _http_server_answer(bytes(start))
    if evidence:  # after the raw answer, which is what this tool is for
        raise client.NotSCGI.answered(address, evidence)
    return 0


_HEAD_SEEN = 64 * 1024  # bytes of the answer kept to read its head


def _receive(sock: socket.socket, timeout: float, address: str, waited: bool) -> bytes:
    try:
        return client.receive(sock, client.CHUNK_SIZE, timeout)
    except client.RequestTimeout as exc:
        if waited:
            raise
        raise client.RequestTimeout(f"{exc}; {client.no_answer_hint(address)}") from None


def _http_server_answer(start: bytes) -> str | None:
    from .protocol import Response as ResponseHead
    from .protocol import ResponseError, ResponseParser

    parser = ResponseParser()
    parser.receive_data(start)
    parser.receive_data(b"")
    try:
        head = parser.next_event()
    except ResponseError:
        return None
    return client.http_server_answer(start, head) if isinstance(head, ResponseHead) else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(scgi_test(sys.argv[1:]))
