"""What can go wrong in an exchange with an SCGI server, each with curl's exit code.

An HTTP server given an SCGI request is the most common mistake: its refusal is
recognised (``http_server_answer``) and said in the error, with the fix.
"""

from __future__ import annotations

from ..addresses import AddressError, AddressLike, parse_address
from ..protocol import Response as ResponseHead
from ..protocol import ResponseError

__all__ = ["ClientError", "ConnectFailed", "ConnectionLost", "EmptyResponse",
           "MalformedResponse", "NotSCGI", "RequestTimeout", "http_server_answer",
           "no_answer_hint"]


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
