"""Apps that fail while a worker boots, or soon after: the master's start-up failure handling.

Each is a factory (``boot_apps:exit_on_load()``), so the failure happens while the
worker loads the app, exactly as it would in a module's top-level code.
"""

import os
import sys
import threading
import time


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def exit_on_load():
    sys.exit("DATABASE_URL not set")


def abort_on_load():
    os.abort()


def hang_on_load(seconds=3600.0):
    time.sleep(seconds)
    return hello


def crash_soon_after_ready(delay=0.05):
    """Loads fine, says ready, then the process dies ``delay`` seconds later."""
    threading.Timer(delay, os._exit, (1,)).start()
    return hello
