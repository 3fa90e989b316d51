"""The connection layer: one path from a connection's first byte to its close, for every model.

A worker model only waits, accepts and schedules; what happens to a connection
is decided here, the same way for all of them, and the app adapters (``apps/``)
see only this layer's small interface (a socket, a body stream, send functions):

1. *Intake* (``intake.py``): the head, and a body of up to ``--body-buffer-size``,
   arrive within their deadlines.  The readiness rule says when a request may go
   to the app; until then the connection waits in the *waiting room*
   (``waiting.py``), armed in the worker's poller (``poller.py``) against its
   deadline, costing no app slot.
2. *The app* (``answer.py``): the adapter answers; a bigger body streams from the
   socket (``streams.py``) within the ``--body-timeout`` deadline; the answer is
   counted (``metrics.py``) and logged (``accesslog.py``).
3. *The end* (``ending.py``): an answer is followed by a half-close, and a body the
   app left unread is drained before the close (waiting in the room again), so
   the front end never loses the answer.  Error answers of our own (400, 408,
   413, 431) end the same way.

With ``--session-affinity`` the master accepts and a worker takes each connection
from its channel instead (``handoff.py``); from there the path is the same.
"""
