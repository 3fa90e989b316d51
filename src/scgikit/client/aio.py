"""The exchange for asyncio: ``arequest``, with ``request``'s arguments and ``Response``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import IO

from ..addresses import AddressError, AddressLike, parse_address
from ..protocol import NEED_DATA, Body, EndOfMessage, encode_request
from ..protocol import Response as ResponseHead
from .body import CHUNK_SIZE, RequestBody
from .errors import ConnectFailed, ConnectionLost, RequestTimeout
from .message import DEFAULT_TIMEOUT, AnswerReader, HeadersLike, Response, Timings, build_environ

__all__ = ["arequest"]


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
    source: RequestBody | AsyncIterator[bytes]
    if isinstance(body, AsyncIterator):
        if content_length is None:
            raise ValueError("an async iterable body needs content_length=")
        source, length = body, content_length
    else:
        source = RequestBody(body, content_length)
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
        if isinstance(source, RequestBody):
            source.close()


async def _aexchange(address: AddressLike, environ: dict[str, str],
                     body: RequestBody | AsyncIterator[bytes], length: int, method: str,
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
            if isinstance(body, RequestBody):
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
        answer = AnswerReader(address, method)
        chunks: list[bytes] = []
        while not isinstance(event := answer.next_event(), EndOfMessage):
            if isinstance(event, ResponseHead):
                timings.first_byte = time.perf_counter() - started
            elif isinstance(event, Body):
                chunks.append(event.data)
            else:
                assert event is NEED_DATA
                try:
                    answer.feed(await reader.read(CHUNK_SIZE))
                except OSError as exc:
                    raise ConnectionLost(f"connection lost while reading: {exc}") from None
        response_head = answer.head
        assert response_head is not None
        data = b"".join(chunks)
        timings.total = time.perf_counter() - started
        environ["CONTENT_LENGTH"] = str(length)
        return Response(response_head.status, response_head.reason, response_head.headers,
                        data, environ, timings)
    finally:
        writer.close()
