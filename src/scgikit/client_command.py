"""``scgikit request`` (curl's habits, over SCGI) and ``scgi-test`` (the classic raw tool).

Every value on the command line is checked before anything connects (``check_*``
below, one per kind of value, shared by both commands): a wrong one is a
``UsageError``, one line naming the flag, the value and what it takes, exit 2.

Exit codes are curl's where curl has one: 2 a wrong value, 6 unknown host, 7 connection
refused, 8 malformed answer (an HTTP server's too: the address is not SCGI), 22 HTTP
status >= 400 with ``--fail``, 23 output write error, 26 body file unreadable,
28 timeout, 52 empty answer, 56 connection lost.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from . import addresses, client
from .addresses import DEFAULT_PORT, AddressError, parse_address
from .arguments import ArgumentParser, decimal, is_utf8, one_line

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


class CommandError(Exception):
    """A failure on this side of the exchange (the command line, the ``-d`` file, the
    ``-o`` file), not the server's; ``exit_code`` is curl's for the same failure."""

    exit_code = 1


class UsageError(CommandError):
    """A value on the command line that cannot be sent: the operator's to fix."""

    exit_code = 2


class BodyReadError(CommandError):
    """The file named by ``-d @file`` cannot be read."""

    exit_code = 26


class OutputError(CommandError):
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
    parser.add_argument("-m", "--timeout", metavar="SECONDS",
                        help="longest wait for connecting or for any data, from "
                             f"{MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} (default {DEFAULT_TIMEOUT:g})")
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
    except (CommandError, client.ClientError) as exc:
        return _failed("scgikit request", exc)


def _failed(prog: str, exc: CommandError | client.ClientError) -> int:
    print(f"{prog}: {one_line(str(exc))}", file=sys.stderr)
    return exc.exit_code


@dataclass
class _Request:
    """A command line's request, every value checked."""

    address: str
    uri: str
    method: str
    headers: list[tuple[str, str]]
    env: dict[str, str]
    timeout: float
    output: str | None  # None: stdout


def _checked(args: argparse.Namespace) -> _Request:
    if len(args.target) > 2:
        raise UsageError("expected [ADDRESS] URI, got " + " ".join(map(repr, args.target)))
    address, uri = args.target if len(args.target) == 2 else (DEFAULT_ADDRESS, args.target[0])
    if args.head and args.data:
        raise UsageError("-I/--head sends HEAD, which has no body: leave out -d/--data")
    for item in args.data:
        check_data("-d/--data", item)
    env: dict[str, str] = {}
    for text in args.env:
        name, value = check_variable("-e/--env", text)
        env[name] = value
    return _Request(
        address=check_address("ADDRESS", address),
        uri=check_uri("URI", uri),
        method=check_method("-X/--request", args.method) if args.method is not None
        else "HEAD" if args.head else "POST" if args.data else "GET",
        headers=[check_header("-H/--header", text) for text in args.headers],
        env=env,
        timeout=check_timeout("-m/--timeout", args.timeout),
        output=check_output("-o/--output", args.output),
    )


def _run(args: argparse.Namespace) -> int:
    request = _checked(args)
    body = b"&".join(_data(item) for item in args.data) if args.data else b""
    headers = request.headers
    check_fixed_headers("-H/--header", args.headers, len(body))
    if args.data and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl does
    try:
        environ_sent = client.build_environ(request.uri, request.method, headers, request.env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.verbose:
        environ_sent["CONTENT_LENGTH"] = str(len(body))
        for name in ("CONTENT_LENGTH", *sorted(set(environ_sent) - {"CONTENT_LENGTH"})):
            _err(f"> {name}={environ_sent[name]}")
        _err(">")

    with client.stream(request.address, request.uri, request.method, headers, body,
                       request.env, request.timeout) as answer:
        head = _format_head(answer)
        if args.verbose:
            for line in head.decode("latin-1").splitlines():
                _err(f"< {line}")
        failed = args.fail and answer.status >= 400
        out = sys.stdout.buffer
        if request.output is not None and not failed:
            try:
                out = open(request.output, "wb")
            except OSError as exc:
                raise OutputError(f"cannot write {request.output}: {exc.strerror}") from None
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


def _data(item: str) -> bytes:
    """``-d``'s bytes: text as the command line carried it, or a file's, or stdin's."""
    if not item.startswith("@"):
        return item.encode("utf-8", "surrogateescape")
    path = item[1:]
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise BodyReadError(f"-d/--data: cannot read {path!r}: {exc.strerror}") from None


def _err(line: str) -> None:
    print(line, file=sys.stderr)


# --- the values each flag takes ---------------------------------------------------------
#
# One check per kind of value, for both commands.  Each returns the value as it will be
# used, or raises a UsageError naming the flag, the value (repr: a control character or
# an undecodable byte shows escaped) and what the flag takes.

DEFAULT_TIMEOUT = client.DEFAULT_TIMEOUT
MIN_TIMEOUT = 0.001  # finer than a millisecond means nothing to a socket wait
MAX_TIMEOUT = 86400.0  # a day: past it, a typo
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token (a method)
_HEADER_NAME = re.compile(r"[0-9A-Za-z-]+")  # the names nginx passes on as HTTP_*
_VARIABLE_NAME = re.compile(r"[!-<>-~]+")  # printable ASCII but '=' and space
_FIXED_VARIABLES = ("CONTENT_LENGTH", "SCGI")  # encode_request writes them itself


def _bad(flag: str, value: str, expected: str) -> UsageError:
    return UsageError(f"{flag} {value!r}: expected {expected}")


def _controls(text: str, allowed: str = "") -> bool:
    return any((ch < " " or ch == "\x7f") and ch not in allowed for ch in text)


def check_timeout(flag: str, text: str | None) -> float:
    """Seconds, a decimal number from MIN_TIMEOUT to MAX_TIMEOUT; None is the default."""
    if text is None:
        return DEFAULT_TIMEOUT
    seconds = decimal(text)
    if seconds is not None and MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        return seconds
    raise _bad(flag, text, f"a number of seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}")


def check_port(flag: str, text: str) -> int:
    """A TCP port a client can connect to: 1 to 65535, in ASCII digits."""
    if 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    raise _bad(flag, text, "a port number from 1 to 65535")


def check_host(flag: str, text: str) -> str:
    """A host name (letters, digits, '-', '_', '.'), an IPv4 address, or an IPv6 address
    (bare or in brackets, with an optional %zone): ``addresses.check_host``."""
    try:
        return addresses.check_host(text)
    except AddressError as exc:
        raise UsageError(f"{flag} {exc}") from None


def check_unix_path(flag: str, path: str) -> str:
    """A unix socket's path: not empty, no NUL, at most 108 bytes."""
    try:
        return addresses.check_unix_path(path)
    except AddressError as exc:
        raise UsageError(f"{flag} {exc}") from None


def check_address(flag: str, text: str) -> str:
    """An SCGI server's address: HOST:PORT, [IPv6]:PORT, or a unix socket path, checked
    by ``addresses.parse_address`` as the server's are; a client has no fd:// and no port 0."""
    expected = "an SCGI address: HOST:PORT, [IPv6]:PORT, or a unix socket as /path or unix:PATH"
    try:
        address = parse_address(text)
    except AddressError as exc:
        raise UsageError(f"{flag} {exc}") from None
    if address.fd is not None:
        raise _bad(flag, text, expected + " (fd://N is a server's inherited socket)")
    if address.path is None and not address.port:
        raise _bad(flag, text, "a port number from 1 to 65535 after the host")
    return text


def check_uri(flag: str, text: str) -> str:
    """A request URI: a path starting with '/', without spaces or control characters."""
    if not text.startswith("/"):
        raise _bad(flag, text, "a path starting with '/'")
    if " " in text or _controls(text):
        raise _bad(flag, text, "a URI without spaces or control characters (write %20 for "
                               "a space)")
    if not is_utf8(text):
        raise _bad(flag, text, "UTF-8 text (the URI holds bytes that are not)")
    return text


def check_method(flag: str, text: str) -> str:
    """A request method: an HTTP token (letters, digits and !#$%&'*+-.^_`|~)."""
    if _TOKEN.fullmatch(text):
        return text
    raise _bad(flag, text, "a method: letters, digits and !#$%&'*+-.^_`|~, no spaces")


def check_header(flag: str, text: str) -> tuple[str, str]:
    """'Name: value': a name nginx passes on, a value of UTF-8 text without control
    characters but tab; the blanks around the value are dropped."""
    name, sep, value = text.partition(":")
    if not sep or not _HEADER_NAME.fullmatch(name):
        raise _bad(flag, text, "'Name: value', the name of letters, digits and '-' "
                               "(nginx drops other names)")
    value = value.strip(" \t")
    if _controls(value, allowed="\t"):
        raise _bad(flag, text, "a header value without CR, LF, NUL or other control "
                               "characters")
    if not is_utf8(value):
        raise _bad(flag, text, "a header value of UTF-8 text (it holds bytes that are not)")
    return name, value


def check_fixed_headers(flag: str, texts: Sequence[str], body_length: int) -> None:
    """Host and Content-Length at most once (nginx answers 400 to a request with two), and
    a Content-Length given by hand must be the body's length, which SCGI sends anyway."""
    seen: dict[str, str] = {}
    for text in texts:
        name, value = check_header(flag, text)
        lower = name.lower()
        if lower in ("host", "content-length") and lower in seen:
            raise _bad(flag, text, f"one {name} header, not two (after {seen[lower]!r})")
        seen[lower] = text
        if lower == "content-length" and value != str(body_length):
            raise _bad(flag, text, f"the body's length, {body_length}, or no Content-Length "
                                   "(CONTENT_LENGTH is always the body's length)")


def check_data(flag: str, text: str) -> str:
    """Text (sent as the bytes the command line carried), @FILE or @-."""
    if text.startswith("@") and (text == "@" or "\0" in text):
        raise _bad(flag, text, "text, @FILE (a file name without NUL) or @- (stdin)")
    return text


def check_variable(flag: str, text: str) -> tuple[str, str]:
    """NAME=VALUE: a NAME of printable ASCII without '=' (not CONTENT_LENGTH or SCGI,
    which the protocol sets), a VALUE of UTF-8 text without NUL (the netstring's
    separator)."""
    name, sep, value = text.partition("=")
    if not sep or not _VARIABLE_NAME.fullmatch(name):
        raise _bad(flag, text, "NAME=VALUE, the NAME of printable ASCII without spaces")
    if name in _FIXED_VARIABLES:
        raise _bad(flag, text, "a variable other than CONTENT_LENGTH (always the body's "
                               "length; -d gives the body) and SCGI (always 1)")
    if "\0" in value:
        raise _bad(flag, text, "a VALUE without NUL, which ends each value in SCGI")
    if not is_utf8(value):
        raise _bad(flag, text, "a VALUE of UTF-8 text (it holds bytes that are not)")
    return name, value


def check_output(flag: str, path: str | None) -> str | None:
    """A file to create or replace in a folder that exists; '-' (or None) is stdout."""
    if path is None or path == "-":
        return None
    try:
        name_bytes = os.fsencode(os.path.basename(path))
    except UnicodeEncodeError:
        name_bytes = b""
    if not name_bytes or "\0" in path:
        raise _bad(flag, path, "a file name without NUL, or - for stdout")
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise _bad(flag, path, "a file, not a folder")
    if not os.path.isdir(folder):
        raise _bad(flag, path, f"a file in a folder that exists (there is no {folder!r})")
    if len(name_bytes) > os.pathconf(folder, "PC_NAME_MAX"):
        raise _bad(flag, path, "a shorter file name")
    if not os.access(folder, os.W_OK):
        raise _bad(flag, path, f"a file in a folder you can write in (not {folder!r})")
    return path


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
    parser.add_argument("--host", help="server host (default localhost)")
    parser.add_argument("--port", help=f"server port, 1 to 65535 (default {DEFAULT_PORT})")
    parser.add_argument("--unix", metavar="PATH", help="connect to a unix socket instead")
    parser.add_argument("-m", "--timeout", metavar="SECONDS",
                        help=f"longest wait for any step, from {MIN_TIMEOUT:g} to "
                             f"{MAX_TIMEOUT:g} (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        uri = check_uri("URI", args.uri)
        timeout = check_timeout("-m/--timeout", args.timeout)
        host = "localhost" if args.host is None else check_host("--host", args.host)
        port = DEFAULT_PORT if args.port is None else check_port("--port", args.port)
        if args.unix is not None:
            address = f"unix:{check_unix_path('--unix', args.unix)}"
        elif ":" in host:
            address = f"[{host}]:{port}"
        else:
            address = f"{host}:{port}"
        return _raw_exchange(address, uri, timeout)
    except (CommandError, client.ClientError) as exc:
        return _failed("scgi-test", exc)
    except KeyboardInterrupt:
        return 130


def _raw_exchange(address: str, uri: str, timeout: float) -> int:
    from .protocol import encode_request

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
