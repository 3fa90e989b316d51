"""Real servers for the tests: started as subprocesses, waited on by condition, stopped.

``ServerProcess`` runs ``python -m scgikit serve ...`` (or any command) with
``--bind 127.0.0.1:0``-style addresses; the master logs ``Listening at: ADDRESS``
for each socket, and ``wait_for_log`` reads those lines, so no test guesses a
free port or sleeps.  Every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from scgi_raw import connect, parse_answer, read_all

from scgikit.protocol import encode_request

FIXTURES = Path(__file__).parent / "fixtureapps"
SRC = Path(__file__).parent.parent / "src"

#: The worker models.  Every server behaviour is tested on each (conftest.py: ``model``).
MODELS = ("sync", "threads", "asyncio")

#: The ASGI twin of each fixture app a server-behaviour test serves: on the asyncio model
#: the twin is served in its place.  A twin answers as its WSGI app does, with the same
#: status, headers and body bytes, and reads the request body as it does; where ASGI
#: cannot (a reason phrase of the app's own, say), the twin's docstring says so.  The
#: table is the whole translation: a target missing from it has no twin, and a test that
#: serves it on asyncio fails at once (``for_model``).  A call's arguments are kept:
#: ``wsgi_apps:factory('x')`` is served as ``asgi_apps:factory('x')``.
ASGI_TWINS = {
    "wsgi_apps:hello": "asgi_apps:hello",
    "wsgi_apps:pid": "asgi_apps:pid",
    "wsgi_apps:slow": "asgi_apps:slow",
    "wsgi_apps:together": "asgi_apps:together",
    "wsgi_apps:env_var": "asgi_apps:env_var",
    "wsgi_apps:heap": "asgi_apps:heap",
    "wsgi_apps:echo_hash": "asgi_apps:echo_hash",
    "wsgi_apps:stream": "asgi_apps:stream",
    "wsgi_apps:big_file": "asgi_apps:big_file",
    "wsgi_apps:empty": "asgi_apps:empty",
    "wsgi_apps:error": "asgi_apps:error",
    "wsgi_apps:error_after_head": "asgi_apps:error_after_head",
    "wsgi_apps:bad_header": "asgi_apps:bad_header",
    "wsgi_apps:sometimes_bad": "asgi_apps:sometimes_bad",
    "wsgi_apps:exc_info_replaces": "asgi_apps:exc_info_replaces",
    "wsgi_apps:closing": "asgi_apps:closing",
    "wsgi_apps:factory": "asgi_apps:factory",
    "wsgi_apps:answer_kinds": "asgi_apps:answer_kinds",
    "wsgi_apps:gated_stream": "asgi_apps:gated_stream",
    "resource_apps:leak_descriptors": "asgi_apps:leak_descriptors",
    "stats_apps:app": "stats_apps:asgi_app",
    "recycling_apps:app": "recycling_apps:asgi_app",
    "timeout_apps:app": "timeout_apps:asgi_app",
    "recycling_apps:gated": "recycling_apps:asgi_gated",
    "session_apps:app": "session_apps:asgi_app",
    "unread_apps:app": "asgi_apps:unread",
    "boot_apps:crash_soon_after_ready": "asgi_apps:crash_soon_after_ready",
    "systemd_apps:environ_report": "asgi_apps:environ_report",
    "systemd_apps:gated": "asgi_apps:systemd_gated",
    "systemd_apps:breakable": "asgi_apps:systemd_breakable",
    "preload_apps:app": "preload_apps:asgi_app",
}


def for_model(model: str, target: str, args: Sequence[str] = (),
              asgi: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The target and ``scgikit serve`` arguments that serve ``target`` on ``model``.

    threads adds ``--worker threads --threads 4`` (unless the test chose a model or threads
    itself).  asyncio serves ``asgi`` when the test names it (an app it wrote for the
    model), else the twin in ASGI_TWINS, and adds ``--worker asyncio`` (unless the test
    chose a model): a WSGI app can never be served there unnoticed.
    """
    import pytest

    args = tuple(args)
    if model not in MODELS:
        raise ValueError(f"unknown worker model {model!r}; the models are {MODELS}")
    if model == "threads" and "--worker" not in args and "--threads" not in args:
        return target, (*args, "--worker", "threads", "--threads", "4")
    if model != "asyncio":
        return target, args
    if asgi is None:
        name, paren, call = target.partition("(")
        twin = ASGI_TWINS.get(name)
        if twin is None:
            pytest.fail(f"{target} has no ASGI twin to serve on the asyncio model: add one to "
                        f"tests/fixtureapps/asgi_apps.py and to ASGI_TWINS in tests/servers.py, "
                        f"or keep the test off asyncio with @pytest.mark.models(..., reason=...)",
                        pytrace=False)
        asgi = twin + paren + call
    if "--worker" not in args:
        args = (*args, "--worker", "asyncio")
    return asgi, args


def app_source(model: str, body: str, prelude: str = "") -> str:
    """The source of a module whose ``app`` answers 200 (no header) with the bytes of the
    expression ``body``, in the kind ``model`` serves: for a test that writes its app to a
    file (to edit it, or to run it from a folder of its own)."""
    if model == "asyncio":
        return (f"{prelude}\n\n"
                "async def app(scope, receive, send):\n"
                "    if scope['type'] != 'http':\n"
                "        return\n"
                "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
                f"    await send({{'type': 'http.response.body', 'body': {body}}})\n")
    return (f"{prelude}\n\n"
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            f"    return [{body}]\n")


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def listen_queue(address: str) -> int:
    """Connections waiting in the listen queue of ``address``, as the kernel counts them (ss):
    0 once the server has accepted them all."""
    if address.startswith("unix:"):
        args, column = ["-lxH", "src", address[5:]], 2
    else:
        args, column = ["-ltnH", "sport", "=", f":{address.rpartition(':')[2]}"], 1
    out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[column]) for line in out.splitlines() if line.strip())


def free_port() -> int:
    """A port that was free a moment ago (only for programs that cannot report theirs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), str(FIXTURES),
                                                      env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerProcess:
    """A server subprocess whose stderr is collected line by line."""

    def __init__(self, argv: Sequence[str], cwd: str | Path | None = None,
                 env: dict[str, str] | None = None, limit_descriptors: int | None = None) -> None:
        self.argv = list(argv)
        self.limit_descriptors = limit_descriptors
        self.cwd = cwd
        self.env = env or child_env()
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def scgikit(cls, target: str, *args: str, bind: Sequence[str] = ("127.0.0.1:0",),
                **kwargs: object) -> ServerProcess:
        argv = [sys.executable, "-m", "scgikit", "serve", target]
        for address in bind:
            argv += ["--bind", address]
        return cls(argv + list(args), **kwargs)  # type: ignore[arg-type]

    def start(self, ready: str | None = r"Listening at: ", timeout: float = 20.0,
              pass_fds: Sequence[int] = ()) -> ServerProcess:
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, pass_fds=pass_fds,
                                     preexec_fn=self._limit if self.limit_descriptors else None)
        threading.Thread(target=self._read, daemon=True).start()
        if ready:
            self.wait_for_log(ready, timeout)
        return self

    def _limit(self) -> None:
        import resource

        limit = self.limit_descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    def _read(self) -> None:
        assert self.proc and self.proc.stderr
        for raw in self.proc.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<stderr closed>")
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0, count: int = 1,
                     start: int = 0) -> list[re.Match[str]]:
        """Wait until ``count`` lines from index ``start`` on match ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for line in self.lines[start:] if (m := regex.search(line))]
                if len(found) >= count:
                    return found
                if self.lines and self.lines[-1] == "<stderr closed>":
                    raise AssertionError(
                        f"server exited before logging {pattern!r}:\n{self.log_unlocked}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {pattern!r} in log:\n{self.log_unlocked}")
                self._changed.wait(left)

    @property
    def log_unlocked(self) -> str:
        return "\n".join(self.lines)

    @property
    def address(self) -> str:
        """The first address the server logged it listens at."""
        return self.addresses[0]

    @property
    def addresses(self) -> list[str]:
        return [m.group(1) for m in self.wait_for_log(r"Listening at: (\S+)")]

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def send_signal(self, signum: int) -> None:
        assert self.proc
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit; kill if it overstays. Returns the exit code."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"server did not stop within {timeout}s:\n{self.log}") from None
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.stop(signal.SIGQUIT, timeout=15)


def worker_pids(master_pid: int) -> set[int]:
    """The live children of ``master_pid``, from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master_pid and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def failed_start(target: str, *args: str) -> ServerProcess:
    """Run a server that should give up on its own; returns it once it has exited."""
    import pytest

    server = ServerProcess.scgikit(target, "--workers", "2", "--log-level", "debug", *args)
    server.start()
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.stop(signal.SIGQUIT, timeout=15)
        pytest.fail(f"the master did not give up within 30s:\n{server.log[-3000:]}")
    server.wait_for_log("<stderr closed>")
    return server


# Starts the command in its arguments with descriptors 3 to 1102 taken (inherited by the
# command), so that whatever it opens is numbered above 1023.
HIGH_DESCRIPTORS = """
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
for _ in range(1100):
    os.set_inheritable(os.open(os.devnull, os.O_RDONLY), True)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def serve_and_stop_above_1023(target: str, args: Sequence[str], transport: str) -> None:
    """Serve ``target`` with every descriptor the server opens numbered above 1023 (where
    select() cannot wait): the metrics and a request are answered, and SIGINT stops it."""
    import pytest

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the descriptor limit ({hard}) leaves no room above 1023")
    server = ServerProcess.scgikit(target, "--stats", "127.0.0.1:0", *args, bind=[transport])
    server.argv[:1] = [sys.executable, "-c", HIGH_DESCRIPTORS]  # then -m scgikit serve...
    try:
        server.start()
        (metrics,) = server.wait_for_log(r"Metrics at: (\S+)")
        host, _, port = metrics.group(1).rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.0 200")  # the master's wait saw it
        with connect(server.address, timeout=10) as sock:
            sock.sendall(encode_request({"REQUEST_METHOD": "GET"}, 0))
            assert parse_answer(read_all(sock)).status == 200
        assert min(int(fd) for fd in os.listdir(f"/proc/{server.pid}/fd")
                   if int(fd) > 2 and os.readlink(f"/proc/{server.pid}/fd/{fd}")
                   .startswith("socket:")) > 1023
        server.send_signal(signal.SIGINT)  # a full stop: the last look at the queue
        assert server.proc is not None and server.proc.wait(30) == 0
    finally:
        server.stop()
    assert "Traceback" not in server.log and "out of range" not in server.log
