"""Queue time: how long a request waited between the front end and the worker.

The server alone cannot see the time a request spent in the front end's hands
and in the listen queue; the front end can stamp it.  ``scgikit config nginx``
sends ``REQUEST_START`` (nginx's ``$msec``: seconds since the epoch, to the
millisecond, taken as nginx builds the request for the backend), and
``scgikit config apache`` sets the header ``X-Request-Start: t=<microseconds>``
(mod_headers' ``%t``: when Apache received the request), which arrives as
``HTTP_X_REQUEST_START``.  ``REQUEST_START`` is read first: it cannot come
from the client, where a header can.

The stamp's unit is told by its size, as New Relic's agents do: a number that
is a time after 2000-01-01 in microseconds is microseconds, else one in
milliseconds is milliseconds, else seconds; a ``t=`` prefix is allowed.

The queue time ends at the worker's accept of the connection, whose moment
every path already keeps (``accepted``, on the monotonic clock): the request
duration (``--stats``, ``{request_time}``) takes over from there, so the two
add up to the time from the stamp to the end of the answer.  It is computed
when a request ends, where it is counted and logged; a request without a
stamp costs two dictionary lookups and no allocation.  A stamp that is not a
number, or more than an hour away from the accept (a clock far off, a value
made up), gives None: the request is not counted, and nothing is said to the
client.  A stamp a little in the future (the front end's clock ahead of
ours) is a queue time of 0.
"""

from __future__ import annotations

import time

__all__ = ["MAX_SKEW", "queue_seconds", "stamp_seconds"]

#: A stamp further than this (seconds) from the accept is ignored.
MAX_SKEW = 3600.0
# 2000-01-01T00:00:00Z: a stamp that is a later time in a unit is in that unit.
_EARLIEST = 946684800.0


def stamp_seconds(text: str) -> float | None:
    """A front end's stamp as seconds since the epoch; None if it is no number."""
    if text.startswith("t="):
        text = text[2:]
    try:
        value = float(text)
    except ValueError:
        return None
    if value > _EARLIEST * 1e6:
        return value / 1e6
    if value > _EARLIEST * 1e3:
        return value / 1e3
    return value


def queue_seconds(variables: dict[str, str], accepted: float) -> float | None:
    """Seconds from the front end's stamp to ``accepted`` (``time.monotonic()`` at the
    accept), at least 0; None without a stamp, or with one that is garbled or more
    than ``MAX_SKEW`` off."""
    text = variables.get("REQUEST_START") or variables.get("HTTP_X_REQUEST_START")
    if not text:
        return None
    start = stamp_seconds(text)
    if start is None:
        return None
    queued = _wall() - (_monotonic() - accepted) - start
    if not -MAX_SKEW <= queued <= MAX_SKEW:  # (NaN too)
        return None
    return queued if queued > 0.0 else 0.0


_wall, _monotonic = time.time, time.monotonic
