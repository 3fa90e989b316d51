"""Whether an answer streams, and the head that tells nginx not to buffer it.

nginx buffers an SCGI answer (``scgi_buffering on``, its default) until its buffers
fill or the answer ends, so the first chunk of a stream, or each event of a
server-sent events stream, reaches the client late.  nginx honours the
``X-Accel-Buffering: no`` header per answer: it passes the answer on as it comes.

An answer streams when its body is not known whole as its head goes out and it has
no Content-Length (a WSGI result that is not a list or tuple, or the ``write()``
callable; an ASGI answer whose first ``http.response.body`` has ``more_body``), or
when its Content-Type is ``text/event-stream``.  A body known whole (a list or tuple,
one ASGI body message, a file: ``wsgi.file_wrapper``, ``http.response.pathsend``)
gains nothing from the header: nginx buffering it frees the worker sooner.

The adapters encode both heads once (``answer_heads``) and send the one that fits
when the body's kind is known: the WSGI exchange when the app's result comes back
(the pure exchange and its C twin call the same ``apps.wsgi.new_heads``), the ASGI
cycle at the first body message.  The app's own X-Accel-Buffering (any value) is
left alone, and ``--front-end-buffering`` sends it never.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["NO_BUFFERING", "answer_heads"]

#: The header line added to the head of an answer that streams.
NO_BUFFERING = b"X-Accel-Buffering: no\r\n"
_EVENT_STREAM = "text/event-stream"


def answer_heads(head: bytes, headers: Iterable[tuple[str, str]],
                 front_end_buffering: bool) -> tuple[bytes, bytes]:
    """``(streaming, whole)``: the encoded ``head`` (ending in its blank line) to send when
    the answer streams, and when its body is known whole; ``head`` itself where nothing
    is added.  ``headers`` are the app's, as (name, value) str pairs.
    """
    if front_end_buffering:
        return head, head
    sized = False
    events = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "x-accel-buffering":
            return head, head  # the app's own choice
        if lowered == "content-length":
            sized = True
        elif lowered == "content-type":
            events = value.partition(";")[0].strip().lower() == _EVENT_STREAM
    if sized and not events:
        return head, head
    marked = head[:-2] + NO_BUFFERING + b"\r\n"
    return marked, marked if events else head
