"""A Quixote site with sessions, for tests/test_quixote.py.

``create_publisher`` is a factory for Quixote's own ``scgi_server.py --factory``: a site
with Quixote's sessions (its SessionManager, as quixote.demo.altdemo uses), /login to make
one and have Quixote set its cookie, and pages that say which worker answered: /pid, and
/slow, which takes SLOW_SECONDS.
"""

import os
import time

from quixote import get_field, get_response, get_session, get_user
from quixote.directory import Directory
from quixote.publish import Publisher
from quixote.session import SessionManager

#: How long /slow takes: long enough that a queue of them outlasts any other request.
SLOW_SECONDS = 0.5


def _text(*lines: str) -> str:
    get_response().set_content_type("text/plain")
    return "".join(f"{line}\n" for line in lines)


class SessionSite(Directory):
    _q_exports = ["", "pid", "slow", "login"]

    def _q_index(self):
        return _text("a Quixote site with sessions")

    def pid(self):
        return _text(f"pid {os.getpid()}")

    def slow(self):
        time.sleep(SLOW_SECONDS)
        return _text(f"pid {os.getpid()}")

    def login(self):
        """Sets the session's user (to ?name=), as altdemo's login does: Quixote keeps the
        session and sets its cookie on the answer."""
        get_session().set_user(get_field("name"))
        return _text(f"pid {os.getpid()}", f"user {get_user()}")


def create_publisher():
    return Publisher(SessionSite(), session_manager=SessionManager(),
                     display_exceptions="plain")
