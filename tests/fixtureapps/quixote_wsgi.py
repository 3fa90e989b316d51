"""The Quixote demo as a WSGI app, for ``scgikit serve quixote_wsgi`` (tests/test_quixote.py).

Quixote's own adapter, ``quixote.wsgi.QWIP``, around the demo's publisher
(``quixote.demo.create_publisher``, the default ``--factory`` of Quixote's scgi_server.py).
A module of its own: Quixote allows one Publisher per process.
"""

from quixote.demo import create_publisher
from quixote.wsgi import QWIP

application = QWIP(create_publisher())
