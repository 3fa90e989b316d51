"""Quixote's own SCGI server script, run as its users run it (tests/test_quixote.py).

Quixote 3.8 ships ``quixote/server/scgi_server.py``, a script written for the ``scgi``
2.2 package: ``from scgi import scgi_server, session_server``, a handler factory passed
as ``handler_class``, and a ``main()`` command line.  ``quixote_script`` gives that file
as installed, or a copy whose import line, and nothing else, names ``scgikit``.
``QuixoteServer`` starts either with its own command line, on TCP (``--host``,
``--port``) or on a unix socket handed over as systemd hands one (the only way the
original serves a unix socket), and waits for its first answer.

The pages are fetched raw, as bytes: over SCGI with scgikit's client's variables (those
nginx sends, plus the two a CGI-style app needs, as the nginx site below adds them), or
over HTTP through nginx.  ``comparable`` masks what two servers may rightly answer
differently; each mask says why.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from servers import ServerProcess, free_port, worker_pids

from scgikit.client import ClientError, build_environ, connect
from scgikit.protocol import encode_request

ORIGINAL_IMPORT = "from scgi import scgi_server, session_server\n"
SCGIKIT_IMPORT = "from scgikit import scgi_server, session_server\n"

#: Quixote finds the page in PATH_INFO under SCRIPT_NAME, as CGI has them; nginx's
#: scgi_params sends neither, so the nginx site adds them (the app is mounted at /).
NGINX_PARAMS = {"SCRIPT_NAME": "", "PATH_INFO": "$uri"}

STARTUP = 20.0  # seconds a server has to give its first answer
TIMEOUT = 30.0  # seconds for any one exchange


def quixote_script(implementation: str, folder: Path) -> Path:
    """Quixote's scgi_server.py as installed ("scgi"), or a copy in ``folder`` with only its
    import line changed to scgikit's ("scgikit")."""
    spec = importlib.util.find_spec("quixote.server.scgi_server")
    assert spec is not None and spec.origin is not None
    original = Path(spec.origin)
    if implementation == "scgi":
        return original
    assert implementation == "scgikit", implementation
    lines = original.read_text().splitlines(keepends=True)
    where = [index for index, line in enumerate(lines) if line == ORIGINAL_IMPORT]
    assert len(where) == 1, f"{original}: {ORIGINAL_IMPORT!r} is not one line of it"
    lines[where[0]] = SCGIKIT_IMPORT
    copy = folder / "scgi_server.py"
    copy.write_text("".join(lines))
    return copy


# Becomes the server as systemd starts a socket-activated service: the socket passed as
# argv[1] moved to fd 3, LISTEN_FDS=1 and LISTEN_PID naming this process, which execv keeps.
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


@dataclass
class Request:
    method: str
    uri: str
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.method} {self.uri}"


def scgi_send(address: str, request: Request, timeout: float = TIMEOUT) -> socket.socket:
    """A connection to ``address`` on which ``request`` was sent over SCGI, with the variables
    nginx would send; the answer is to be read."""
    path = unquote(urlsplit(request.uri).path)
    environ = build_environ(request.uri, request.method, request.headers,
                            {"SCRIPT_NAME": "", "PATH_INFO": path})
    sock = connect(address, timeout)
    try:
        sock.sendall(encode_request(environ, len(request.body)) + request.body)
    except BaseException:
        sock.close()
        raise
    return sock


def scgi_exchange(address: str, request: Request, timeout: float = TIMEOUT) -> bytes:
    """The raw answer to ``request`` sent over SCGI (``scgi_send``)."""
    with scgi_send(address, request, timeout) as sock:
        return read_all(sock)


def http_exchange(port: int, request: Request, timeout: float = TIMEOUT) -> bytes:
    """The raw answer of the HTTP server on 127.0.0.1:``port`` to ``request``."""
    lines = [f"{request.method} {request.uri} HTTP/1.1", "Host: example.test",
             "Connection: close", *(f"{name}: {value}" for name, value in request.headers)]
    if request.body or request.method == "POST":
        lines.append(f"Content-Length: {len(request.body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + request.body)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """The head's lines (an HTTP status line or SCGI's Status: first) and the body."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no end of head in {raw[:300]!r}"
    return head.split(b"\r\n"), body


def status(raw: bytes) -> int:
    first = split(raw)[0][0]
    return int(first.split()[1])


# What two servers may rightly answer differently, each with its reason: the clock, and
# the addresses of objects in two different processes.  Every mask is applied to both
# answers; whatever it does not name must be equal byte for byte.
CLOCK_HEADERS = {
    b"date",     # the time of the answer (Quixote's; through nginx, nginx's)
    b"expires",  # /favicon.ico: the time of the answer plus a day (else "-1": left as is)
}
BODY_MASKS = [
    # /dynamic/: "This little page was created on" time.asctime() of its request
    (re.compile(rb"created on \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\."),
     b"created on (the clock)."),
    # /extras/form: the form's hidden field 'time' holds time.time() when it was made
    (re.compile(rb'(name="time" value=")\d+\.\d*(")'), rb"\1(the clock)\2"),
    # 404 pages name the directory object ("<... object at 0x7f...>"), the form's result
    # shows repr()s with id() in hex ("<Topping at 7f...: ...>"): a process's addresses
    (re.compile(rb"((?:object|Topping|Upload) at )(?:0x)?[0-9a-f]{6,16}"), rb"\1(address)"),
]
# Through nginx, besides: the environment dumps (/dumpreq, /error, the form's result) show
# REMOTE_PORT, the test client's ephemeral port, new for each connection; the port and
# the folder (DOCUMENT_ROOT: its prefix's html/) of each server's own nginx; and
# REQUEST_START, the time nginx passed the request on (the config's queue-time stamp).
_NGINX_VARIABLES = rb"(?:REMOTE_PORT|SERVER_PORT|DOCUMENT_ROOT|REQUEST_START)"
NGINX_BODY_MASKS = [
    (re.compile(rb"(<th>" + _NGINX_VARIABLES + rb"</th><td>)[^<]*"), rb"\1(nginx's)"),
    (re.compile(rb"(\n" + _NGINX_VARIABLES + rb" +)[^\n]*"), rb"\1(nginx's)"),
]


# And the history of the worker that answers, for one part of the demo: Quixote's
# StaticBundle (/extras/bundle_data/) keeps each file it serves in a cache of its worker,
# with the cache time it was first made with: 100 days (Expires and Cache-Control saying so)
# when first asked for by a path with a content token; none when first made for the links
# of /extras/bundle or by a path without (no such headers on a file, Quixote's default
# Expires: -1 on a bundle of files).  Which worker answers is the server's to choose (the
# original's master itself hands a request to a new child when the one it prefers has not
# said it is ready yet): on those pages, these headers, with one of these values, are left
# out of both answers.
WORKER_CACHE_PATH = "/extras/bundle_data/"
WORKER_CACHE_HEADERS = {(b"cache-control", b"max-age=0, no-cache"), (b"expires", b"-1"),
                        (b"cache-control", b"max-age=8640000"), (b"expires", b"(the clock)")}


def comparable(raw: bytes, masks: list[tuple[re.Pattern[bytes], bytes]] = BODY_MASKS,
               uri: str = "") -> bytes:
    """``raw`` (the answer to ``uri``) with what ``masks``, CLOCK_HEADERS and the worker's
    cache name replaced (Content-Length following its body when a mask changed its length)."""
    lines, body = split(raw)
    masked = body
    for pattern, replacement in masks:
        masked = pattern.sub(replacement, masked)
    head = []
    for line in lines:
        name, colon, value = line.partition(b":")
        key, value = name.lower(), value.strip()
        if colon and key in CLOCK_HEADERS and value != b"-1":
            line = name + b": (the clock)"
            value = b"(the clock)"
        elif colon and key == b"content-length" and int(value) == len(body):
            line = name + b": " + str(len(masked)).encode()
        if uri.startswith(WORKER_CACHE_PATH) and (key, value) in WORKER_CACHE_HEADERS:
            continue
        head.append(line)
    return b"\r\n".join(head) + b"\r\n\r\n" + masked


class QuixoteServer:
    """Quixote's scgi_server.py started with its own command line, on ``family`` ("tcp":
    --host and --port; "unix": a listening socket in ``folder`` inherited as from systemd)."""

    def __init__(self, script: Path, args: list[str], family: str, folder: Path) -> None:
        self.script = script
        self.args = args
        self.family = family
        self.folder = folder
        self.address = ""
        self.server: ServerProcess | None = None
        self.probe = Request("GET", "/")

    def start(self) -> QuixoteServer:
        if self.family == "unix":
            return self._start_on_inherited_socket()
        for attempt in range(3):
            # The script cannot report a port it chose: a free one (taken in the meantime,
            # it exits with "Address already in use", and another port is tried).
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            self.server = ServerProcess([sys.executable, *self._argv(port)], cwd=self.folder)
            self.server.start(ready=None)
            try:
                self._wait_for_first_answer()
                return self
            except AssertionError:
                if attempt == 2 or "Address already in use" not in self.log:
                    raise
                self.server.stop()
        raise AssertionError("unreachable")

    def _start_on_inherited_socket(self) -> QuixoteServer:
        path = self.folder / "quixote.sock"
        self.address = f"unix:{path}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(path))
            sock.listen(40)
            # --host and --port given all the same, as a unit's command line would
            argv = [sys.executable, "-c", LAUNCHER, str(sock.fileno()), *self._argv(free_port())]
            self.server = ServerProcess(argv, cwd=self.folder)
            self.server.start(ready=None, pass_fds=[sock.fileno()])
        self._wait_for_first_answer()
        return self

    def _argv(self, port: int) -> list[str]:
        return [str(self.script), "--host", "127.0.0.1", "--port", str(port), *self.args]

    def _wait_for_first_answer(self) -> None:
        """Until the first answer, with a deadline: a refused connection is retried (the
        script has not bound yet); on an inherited socket, the request waits in its queue."""
        assert self.server and self.server.proc
        deadline = time.monotonic() + STARTUP
        while True:
            if self.server.proc.poll() is not None:
                self.server.wait_for_log("<stderr closed>")  # the whole of its last words
                raise AssertionError(f"{self} exited with {self.server.proc.returncode}:\n"
                                     f"{self.log}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self} gave no answer within {STARTUP} s:\n{self.log}")
            try:
                answer = scgi_exchange(self.address, self.probe, timeout=left)
            except (ClientError, OSError):  # refused (not listening yet), reset, timed out
                time.sleep(0.05)
                continue
            assert status(answer) == 200, (str(self), answer[:500])
            return

    @property
    def pid(self) -> int:
        assert self.server
        return self.server.pid

    @property
    def log(self) -> str:
        return self.server.log if self.server else ""

    def __str__(self) -> str:
        return f"{self.script} {' '.join(self.args)} on {self.address}"

    def stop(self) -> None:
        """SIGTERM (the original's master dies of it, its children when they find it gone;
        scgikit's stops gracefully), then wait for the master and its workers to be gone."""
        if not self.server or not self.server.proc:
            return
        proc = self.server.proc
        workers = worker_pids(proc.pid) if proc.poll() is None else set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError(f"{self} did not stop within 20 s:\n{self.log}") from None
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self}: workers {workers} outlived their master")
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an orphan that exited may stay a zombie: it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- the demo's pages --------------------------------------------------------------------------

FORM_BOUNDARY = "quixote-demo-form-7MA4YWxkTrZu0gW"


def form_post() -> Request:
    """The demo's form (/extras/form) filled in and sent as a browser sends it: every widget,
    two toppings, a file, the hidden time and the submit button."""
    fields = [("time", "1796671754.5"), ("name", "Dulcinea del Toboso"),
              ("password", "aldonza"), ("confirm", "yes"), ("color", "brown"),
              ("size", 'Large (14")'), ("toppings", "cheese: $0.50"),
              ("toppings", "onions: $0.25"), ("go", "Go!")]
    parts = [f'--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n".encode() for name, value in fields]
    parts.append(f'--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                 'filename="pizza.txt"\r\nContent-Type: text/plain\r\n\r\n'.encode()
                 + b"thin crust, no olives\n" * 40 + b"\r\n")
    body = b"".join(parts) + f"--{FORM_BOUNDARY}--\r\n".encode()
    return Request("POST", "/extras/form", body,
                   [("Content-Type", f"multipart/form-data; boundary={FORM_BOUNDARY}")])


#: Pages the demo has but no link leads to: the icon browsers ask for, its error paths, a
#: redirect to add a slash, a query string, one file of the static directory and a folder.
UNLINKED = ["/favicon.ico", "/dynamic", "/extras", "/nosuch", "/extras/nosuch/",
            "/extras/12/nosuch", "/dumpreq?a=1&a=2&b=caf%C3%A9+au+lait",
            "/extras/src/errors.py", "/extras/src/demo/"]
#: The pages whose links are followed: the rest are leaves (the static directory's listing
#: links to every file of Quixote; each integer's page to its neighbours, without end).
FOLLOWED = {"/", "/extras/", "/extras/12/", "/extras/bundle"}
HREF = re.compile(rb'href="([^"#]*)"')


def demo_pages(fetch) -> list[Request]:
    """Every page of the demo: those its index pages link to (found by following the links
    from /, each page once), the unlinked ones, a HEAD and the form filled in and posted."""
    found: list[str] = []
    queue = ["/"]
    while queue and len(found) < 60:
        uri = queue.pop(0)
        if uri in found:
            continue
        found.append(uri)
        if uri not in FOLLOWED:
            continue
        raw = fetch(Request("GET", uri))
        for link in HREF.findall(split(raw)[1]):
            target = urljoin("http://x" + uri, link.decode())
            parts = urlsplit(target)
            if parts.netloc == "x":
                queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    pages = [Request("GET", uri) for uri in found + [u for u in UNLINKED if u not in found]]
    return [*pages, Request("HEAD", "/"), Request("HEAD", "/extras/12/factorial"), form_post()]
