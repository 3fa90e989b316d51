"""Apps that misuse the worker's resources, for the tests that prove the worker heals."""

import os
import threading
import time

_leaked = []


def _leak_forever():
    # As a buggy connection pool would: takes every descriptor that comes free.
    while True:
        try:
            _leaked.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            time.sleep(0.001)


def leak_descriptors(environ, start_response):
    """The first worker to serve a request starts leaking every descriptor it can get.

    Only one worker ever leaks (the one that creates the LEAK_MARK file), so the
    worker that replaces it serves normally.
    """
    mark = environ.get("LEAK_MARK") or os.environ["LEAK_MARK"]
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        threading.Thread(target=_leak_forever, daemon=True).start()
    except OSError:
        pass  # another worker leaks, or this one has no descriptor left to tell
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
