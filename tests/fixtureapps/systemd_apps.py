"""Apps for the systemd tests: what the app and its children see, and loads the test controls.

The test names files through the environment the server passes down to its
workers (``SYSTEMD_TEST_GATE``, ``SYSTEMD_TEST_BREAK``).
"""

import json
import os
import subprocess
import sys
import time

SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                     "WATCHDOG_USEC", "WATCHDOG_PID")

# Run by the app as a child process that inherits every inheritable descriptor
# (close_fds=False): which systemd variables it sees, and whether fd 3 (the first
# socket systemd passes) reached it.
CHILD = """
import json, os
try:
    os.fstat(3)
    fd3 = True
except OSError:
    fd3 = False
print(json.dumps({"environ": sorted(os.environ), "fd3": fd3}))
"""


def report():
    """The systemd variables in the worker's os.environ and in a child's, as JSON."""
    child = subprocess.run([sys.executable, "-I", "-c", CHILD], capture_output=True,
                           close_fds=False, check=True)
    seen = json.loads(child.stdout)
    return json.dumps({
        "app": sorted(name for name in os.environ if name in SYSTEMD_VARIABLES),
        "child": sorted(name for name in seen["environ"] if name in SYSTEMD_VARIABLES),
        "child_has_fd3": seen["fd3"],
    }).encode()


def environ_report(environ, start_response):
    """Answers with the systemd variables in the worker's os.environ and in a child's."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [report()]


def gated(app=environ_report):
    """Loads once the file $SYSTEMD_TEST_GATE exists; creates $SYSTEMD_TEST_GATE.loading first.

    The test knows the worker is loading the app, checks what systemd was told
    meanwhile, then opens the gate.  ``app``: what it loads (the ASGI twin's, on asyncio).
    """
    gate = os.environ["SYSTEMD_TEST_GATE"]
    with open(gate + ".loading", "w"):
        pass
    while not os.path.exists(gate):
        time.sleep(0.01)
    return app


def breakable(app=environ_report):
    """Fails to load while the file $SYSTEMD_TEST_BREAK exists: a reload that fails."""
    if os.path.exists(os.environ["SYSTEMD_TEST_BREAK"]):
        sys.exit("the new version is broken")
    return app
