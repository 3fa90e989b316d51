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

from .aio import arequest
from .blocking import StreamedResponse, connect, receive, request, stream
from .body import CHUNK_SIZE, BodyLike
from .errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    EmptyResponse,
    MalformedResponse,
    NotSCGI,
    RequestTimeout,
    http_server_answer,
    no_answer_hint,
)
from .message import DEFAULT_TIMEOUT, HeadersLike, Response, Timings, build_environ

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_TIMEOUT",
    "BodyLike",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "EmptyResponse",
    "HeadersLike",
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
    "no_answer_hint",
    "receive",
    "request",
    "stream",
]
