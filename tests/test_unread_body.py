"""An answer given without reading the request body reaches the client through nginx.

An upload endpoint that refuses (401, 403, 404) or redirects (302) without reading
``wsgi.input`` is ordinary. If the worker then closes the connection with body bytes
still unread, the kernel resets it, and nginx (still writing the body) loses the answer:
``writev() failed (32: Broken pipe) while sending request to upstream``, and the
browser gets a 502. So after every answer the server must read and drop the rest of
the announced body before closing (bounded by --linger-size and --linger-timeout).

The real Debian nginx runs the configuration ``scgikit config nginx`` prints, in front of
``scgikit serve --workers 2``, over TCP and over a unix socket, with the app on each
worker model (its ASGI twin on asyncio: tests/servers.py) and with a classic handler
(tests/fixtureapps/unread_apps.py). Each case is sent several times, because whether the
reset beats the answer is a race.
"""

import hashlib
import http.client
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from figures import record
from frontends import FrontEnd, available
from servers import MODELS, ServerProcess, for_model
from unread_apps import LOCATION, OK_BODY, PARTIAL

APP = "unread_apps:app"
CLASSIC = "unread_apps:Unread"  # a classic handler runs on the sync model only
KIB, MIB = 1 << 10, 1 << 20
SIZES = [1 * KIB, 64 * KIB, 1 * MIB, 4 * MIB, 20 * MIB]
SIZE_IDS = ["1KiB", "64KiB", "1MiB", "4MiB", "20MiB"]
ATTEMPTS = 5

# route -> (status, headers that must arrive, exact body)
ROUTES = {
    "/ok": (200, {}, OK_BODY),
    "/redirect": (302, {"location": LOCATION}, b"see /login\n"),
    "/unauthorized": (401, {"www-authenticate": 'Basic realm="upload"'}, b"log in first\n"),
    "/missing": (404, {}, b"no such upload endpoint\n"),
}

_bodies: dict[int, bytes] = {}


def body_of(size):
    if size not in _bodies:
        _bodies[size] = os.urandom(KIB) * (size // KIB)
    return _bodies[size]


class Stack:
    """nginx in front of one scgikit backend, and the folders they use."""

    def __init__(self, transport, kind):
        self.transport, self.kind = transport, kind
        self.sent = self.intact = 0  # requests through nginx, and answers that arrived whole
        reason = available("nginx")
        if reason:
            pytest.skip(reason)
        self.folders = []
        bind = "127.0.0.1:0"
        args = ["--workers", "2"]
        if transport == "unix":
            folder = self._folder("sock")
            bind = f"unix:{folder}/app.sock"
            args += ["--socket-mode", "0666"]
        target, args = (CLASSIC, args) if kind == "classic" else for_model(kind, APP, args)
        self.backend = ServerProcess.scgikit(target, *args, bind=(bind,)).start()
        try:
            self.front = FrontEnd("nginx", self._folder("nginx"), [self.backend.address]).start()
        except BaseException:
            self.backend.stop()
            raise

    def _folder(self, what):
        folder = Path(tempfile.mkdtemp(prefix=f"scgikit-unread-{what}-"))
        folder.chmod(0o755)
        self.folders.append(folder)
        return folder

    def stop(self):
        try:
            self.front.stop()
        finally:
            self.backend.stop()
            for folder in self.folders:
                shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", params=[(transport, kind) for transport in ("tcp", "unix")
                                        for kind in (*MODELS, "classic")],
                ids=lambda p: "-".join(p))
def stack(request):
    stack = Stack(*request.param)
    yield stack
    stack.stop()
    if stack.sent:
        record("answers behind nginx of routes that leave a 1 KiB-20 MiB body unread",
               stack.transport, app=stack.kind, intact=f"{stack.intact}/{stack.sent}")


def post(stack, path, body):
    """POST through nginx: (status, {lower-case header: value}, body), or the error met."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.front.port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return None, {}, f"{type(exc).__name__}: {exc}".encode()
    headers = {name.lower(): value for name, value in response.getheaders()}
    try:
        return response.status, headers, response.read()
    except http.client.IncompleteRead as exc:
        return response.status, headers, exc.partial  # the answer was cut short
    except (OSError, http.client.HTTPException):
        return response.status, headers, b""
    finally:
        conn.close()


def _describe(outcome, must_have, expected_body):
    status, headers, body = outcome
    if status is None:
        return f"no answer ({body.decode()})"
    if body == expected_body:
        shown = "the expected body"
    elif expected_body.startswith(body):
        shown = f"a body cut at {len(body)} of {len(expected_body)} bytes"
    else:
        shown = f"body {body[:120]!r} ({len(body)} bytes)"
    missing = [name for name, value in must_have.items() if headers.get(name) != value]
    return f"{status} with {shown}" + (f", without the right {', '.join(missing)}"
                                       if missing else "")


def check_attempts(stack, path, size, expected):
    """Send ``path`` ATTEMPTS times; every answer must be exactly ``expected``."""
    status, must_have, expected_body = expected
    data = body_of(size)
    log_start = len(stack.front.error_log)
    outcomes = [post(stack, path, data) for _ in range(ATTEMPTS)]
    good = [o[0] == status and o[2] == expected_body
            and all(o[1].get(k) == v for k, v in must_have.items()) for o in outcomes]
    stack.sent += len(good)
    stack.intact += good.count(True)
    new_log = stack.front.error_log[log_start:]
    errors = [line for line in new_log.splitlines() if "[error]" in line or "[crit]" in line]
    assert all(good), (
        f"POST {path} with {size} bytes: {good.count(True)} of {ATTEMPTS} intact; got "
        + "; ".join(_describe(o, must_have, expected_body) for o in outcomes)
        + "\nnginx error.log:\n" + "\n".join(errors[-6:]))
    still_serves(stack)


def still_serves(stack):
    data = body_of(KIB)
    status, _, body = post(stack, "/read", data)
    assert (status, body) == (200, f"read {KIB} sha256 "
                                   f"{hashlib.sha256(data).hexdigest()}\n".encode()), \
        f"the backend no longer serves: {status} {body[:200]!r}\n{stack.backend.log[-2000:]}"


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("path", list(ROUTES), ids=lambda p: p.strip("/"))
def test_answer_without_reading_the_body_arrives_intact(stack, path, size):
    check_attempts(stack, path, size, ROUTES[path])


def test_answer_after_reading_only_the_start_of_a_4mib_body_arrives_intact(stack):
    data = body_of(4 * MIB)
    text = f"read {PARTIAL} sha256 {hashlib.sha256(data[:PARTIAL]).hexdigest()}\n"
    check_attempts(stack, "/partial", 4 * MIB, (200, {}, text.encode()))


@pytest.mark.parametrize("size", [64 * KIB, 20 * MIB], ids=["64KiB", "20MiB"])
def test_control_a_route_that_reads_the_whole_body_arrives_intact(stack, size):
    data = body_of(size)
    text = f"read {size} sha256 {hashlib.sha256(data).hexdigest()}\n"
    check_attempts(stack, "/read", size, (200, {}, text.encode()))
