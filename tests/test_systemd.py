"""Running under systemd: sd_notify messages, socket activation, the example unit files.

What the workers take part in (readiness once one can serve, reloads, the sockets they
serve, the variables they must not see) is tested on every worker model (conftest.py:
model); the master's own notify socket handling, once.

The test plays systemd's part: it binds the NOTIFY_SOCKET datagram socket (with
SO_PASSCRED, so each message comes with its sender's pid, as systemd checks for
NotifyAccess=main), makes the listening sockets itself and passes them as fd 3
on with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID.  LISTEN_PID must be the pid of
the server, known only once it runs: a launcher moves the sockets into place,
sets it to its own pid and execs the server.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from scgi_raw import parse_answer, read_all, request
from servers import ServerProcess, child_env, for_model, wait_until

from scgikit.cli import build_parser
from scgikit.master.systemd import Notifier, notify_address, watchdog_interval
from scgikit.options import from_arguments
from scgikit.protocol import encode_request

UNITS = Path(__file__).parent.parent / "docs" / "systemd"


def scgi_request() -> bytes:
    return encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "SERVER_NAME": "test",
                           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}, 0)

# Moves the sockets given as argv[1] ("7,9") to fd 3 on, names itself in LISTEN_PID
# and becomes the server: what systemd does between fork and exec.
LAUNCHER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",") if fd]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "scgikit", "serve", *sys.argv[2:]])
"""


@dataclass
class Message:
    pid: int  # the sender, from SCM_CREDENTIALS
    fields: dict[str, str]


class Systemd:
    """The service manager's side: a NOTIFY_SOCKET and the messages received on it."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.messages: list[Message] = []

    @property
    def variable(self) -> str:
        """NOTIFY_SOCKET as systemd writes it: '@' for the abstract namespace."""
        if isinstance(self.address, bytes):
            return "@" + self.address[1:].decode()
        return self.address

    def receive(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return False
        pid = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(Message(pid, fields))
        return True

    def wait_for(self, key: str, value: str | None = None, count: int = 1,
                 timeout: float = 20.0) -> Message:
        """Receive until ``count`` messages carry ``key`` (=``value``); returns the last."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages
                     if key in m.fields and value in (None, m.fields[key])]
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {count} x {key}={value} from the server within "
                                     f"{timeout}s; received {self.summary()}")
            self.receive(min(left, 0.5))

    def summary(self) -> list[str]:
        return ["|".join(f"{k}={v}" for k, v in m.fields.items() if k != "STATUS")
                or f"STATUS={m.fields['STATUS']}" for m in self.messages]

    def states(self) -> list[str]:
        """The state changes received, in order (STATUS and WATCHDOG left out)."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [k for m in self.messages for k in keys if k in m.fields]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path):
    manager = Systemd(str(tmp_path / "notify"))
    yield manager
    manager.close()


def listening(kind: str, tmp_path: Path) -> tuple[socket.socket, str]:
    """A listening socket as a socket unit makes it, and the address a client uses."""
    if kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    else:
        path = tmp_path / f"{kind}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        address = f"unix:{path}"
    sock.listen(16)
    return sock, address


def activated(target: str, *args: str, sockets: list[socket.socket], systemd: Systemd | None,
              ready: str | None = r"Listening at: ", model: str | None = None,
              **environ: str) -> ServerProcess:
    """``scgikit serve`` started as systemd starts a socket-activated Type=notify service;
    on ``model`` (conftest.py), if given: the ASGI twin of ``target`` on asyncio."""
    if model is not None:
        target, args = for_model(model, target, args)
    fds = [sock.fileno() for sock in sockets]
    env = child_env(**environ)
    env["LISTEN_FDS"] = str(len(fds))
    if systemd is not None:
        env["NOTIFY_SOCKET"] = systemd.variable
    server = ServerProcess([sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), target,
                            *args], env=env)
    return server.start(ready=ready, pass_fds=fds)


@pytest.fixture
def servers():
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.stop(signal.SIGQUIT, timeout=15)


# --- sd_notify ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_ready_with_mainpid_is_sent_by_the_master_once_a_worker_can_serve(
        kind, model, systemd, servers, tmp_path):
    sock, address = listening(kind, tmp_path)
    gate = tmp_path / "gate"
    server = activated("systemd_apps:gated()", "--workers", "1", sockets=[sock],
                       systemd=systemd, model=model, SYSTEMD_TEST_GATE=str(gate))
    servers.append(server)
    wait_until(lambda: Path(f"{gate}.loading").exists(), message="the worker loading the app")
    starting = systemd.wait_for("STATUS")
    assert starting.fields["STATUS"].startswith("Starting: 1 worker loading the app")
    assert "READY" not in systemd.states()  # the app is still loading: nobody could be served
    gate.touch()
    ready = systemd.wait_for("READY", "1")
    assert ready.fields["MAINPID"] == str(server.pid)
    assert ready.pid == server.pid  # the master itself (NotifyAccess=main)
    assert ready.fields["STATUS"] == "Serving: 1 worker ready (generation 0)"
    assert request(address, "/").status == 200
    sock.close()


def test_reload_and_stop_are_reported_in_order(model, systemd, servers, tmp_path):
    sock, address = listening("tcp", tmp_path)
    server = activated("systemd_apps:environ_report", "--workers", "2", sockets=[sock],
                       systemd=systemd, model=model)
    servers.append(server)
    systemd.wait_for("READY", "1")  # once the first worker serves; then the second:
    systemd.wait_for("STATUS", "Serving: 2 workers ready (generation 0)")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    server.send_signal(signal.SIGHUP)
    reloading = systemd.wait_for("RELOADING", "1")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= after
    assert reloading.fields["STATUS"] == ("Reloading: 0 of 2 workers of generation 1 ready; "
                                          "2 old ones serving")
    ready = systemd.wait_for("READY", "1", count=2)
    assert ready.fields["STATUS"] == "Serving: 2 workers ready (generation 1)"
    server.wait_for_log(r"Reload: generation 1 ready")
    assert request(address, "/").status == 200
    assert server.stop(signal.SIGTERM) == 0
    stopping = systemd.wait_for("STOPPING", "1")
    assert stopping.fields["STATUS"].startswith("Stopping: ")
    assert systemd.states() == ["READY", "RELOADING", "READY", "STOPPING"]
    assert {m.pid for m in systemd.messages} == {server.pid}
    sock.close()


def test_a_failed_reload_is_reported_over_with_ready(model, systemd, servers, tmp_path):
    sock, address = listening("unix", tmp_path)
    broken = tmp_path / "broken"
    server = activated("systemd_apps:breakable()", "--workers", "1", sockets=[sock],
                       systemd=systemd, model=model, SYSTEMD_TEST_BREAK=str(broken))
    servers.append(server)
    systemd.wait_for("READY", "1")
    broken.touch()
    server.send_signal(signal.SIGHUP)
    systemd.wait_for("RELOADING", "1")
    ready = systemd.wait_for("READY", "1", count=2)
    server.wait_for_log(r"Reload failed: .*keeping generation 0")
    assert ready.fields["STATUS"].startswith("Serving: 1 worker ready (generation 0)")
    assert request(address, "/").status == 200
    sock.close()


def test_notify_socket_in_the_abstract_namespace(servers, tmp_path):
    systemd = Systemd(b"\0scgikit-test-" + uuid.uuid4().hex.encode())
    try:
        sock, address = listening("tcp", tmp_path)
        server = activated("systemd_apps:environ_report", sockets=[sock], systemd=systemd)
        servers.append(server)
        assert systemd.variable.startswith("@scgikit-test-")
        assert systemd.wait_for("READY", "1").fields["MAINPID"] == str(server.pid)
        sock.close()
    finally:
        systemd.close()


def test_watchdog_pings_keep_coming_from_the_master(systemd, servers, tmp_path):
    sock, _ = listening("tcp", tmp_path)
    server = activated("systemd_apps:environ_report", sockets=[sock], systemd=systemd,
                       WATCHDOG_USEC="200000")
    servers.append(server)
    systemd.wait_for("READY", "1")
    pings = len([m for m in systemd.messages if "WATCHDOG" in m.fields])
    last = systemd.wait_for("WATCHDOG", "1", count=pings + 3)
    assert last.pid == server.pid
    sock.close()


def test_notifier_sends_each_state_change_once_and_nothing_after_stopping(systemd):
    notifier = Notifier(systemd.variable)
    notifier.reloading("a")  # before the first READY systemd still waits for that: silent
    notifier.ready("b")
    notifier.ready("b")
    notifier.reloading("c")
    notifier.reloading("c")
    notifier.ready("d")
    notifier.stopping("e")
    notifier.ready("f")
    notifier.reloading("g")
    notifier.update_status("e")  # what systemd already shows: not sent again
    notifier.update_status("h")
    while systemd.receive(0.2):
        pass
    assert systemd.summary() == [
        f"READY=1|MAINPID={os.getpid()}", "RELOADING=1|MONOTONIC_USEC="
        + systemd.messages[1].fields["MONOTONIC_USEC"], f"READY=1|MAINPID={os.getpid()}",
        "STOPPING=1", "STATUS=h"]
    assert [m.fields.get("STATUS") for m in systemd.messages] == ["b", "c", "d", "e", "h"]


def test_watchdog_meant_for_another_process_or_absent_sends_no_pings():
    assert watchdog_interval({"WATCHDOG_USEC": "200000"}, 42) == 0.1
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "42"}, 42) == 0.1
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "7"}, 42) == 0.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) == 0.0
    assert watchdog_interval({}, 42) == 0.0


def test_notify_socket_forms():
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abstract") == b"\0abstract"
    assert notify_address("") is None
    assert notify_address("vsock:2:1234") is None  # not a unix socket: ignored, logged


def test_a_notify_socket_that_stops_reading_costs_one_warning_and_no_service(tmp_path, servers):
    # systemd never reads: its queue fills with pings, and every send from then on
    # fails (EAGAIN).  The master must neither wait nor fail, and say so once.
    deaf = Systemd(str(tmp_path / "deaf"))
    try:
        sock, address = listening("unix", tmp_path)
        server = activated("systemd_apps:environ_report", sockets=[sock], systemd=deaf,
                           WATCHDOG_USEC="20000")
        servers.append(server)
        server.wait_for_log(r"Cannot notify systemd at NOTIFY_SOCKET=\S+/deaf: ")
        assert request(address, "/").status == 200
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload: generation 1 ready")
        assert request(address, "/").status == 200
        assert server.stop(signal.SIGTERM) == 0
        assert len(re.findall("Cannot notify systemd", server.log)) == 1
        sock.close()
    finally:
        deaf.close()


# --- socket activation ------------------------------------------------------------------------


def test_passed_sockets_serve_and_are_named_by_listen_fdnames(model, systemd, servers, tmp_path):
    tcp, tcp_address = listening("tcp", tmp_path)
    unix, unix_address = listening("unix", tmp_path)
    server = activated("systemd_apps:environ_report", sockets=[tcp, unix], systemd=systemd,
                       model=model, LISTEN_FDNAMES="web:local")
    servers.append(server)
    server.wait_for_log(r'Listening at: systemd fd 3 "web" \(127\.0\.0\.1:\d+\)')
    server.wait_for_log(r'Listening at: systemd fd 4 "local" \(unix:\S+unix\.sock\)')
    systemd.wait_for("READY", "1")
    for address in (tcp_address, unix_address):
        answer = request(address, "/")
        assert answer.status == 200
        # Neither the app nor a program it runs takes itself for the service systemd
        # started, nor inherits the listening socket.
        assert json.loads(answer.body) == {"app": [], "child": [], "child_has_fd3": False}
    tcp.close()
    unix.close()


def test_a_connection_made_while_the_service_restarts_waits_for_the_next_server(
        model, systemd, servers, tmp_path):
    # systemd holds the socket across the restart; the server that stops must leave its
    # file and its queue alone, and the next one serves what waited there.
    sock, address = listening("unix", tmp_path)
    first = activated("systemd_apps:environ_report", sockets=[sock], systemd=systemd,
                      model=model)
    servers.append(first)
    systemd.wait_for("READY", "1")
    assert first.stop(signal.SIGTERM) == 0
    assert Path(address.removeprefix("unix:")).exists()
    with socket.socket(socket.AF_UNIX) as waiting:
        waiting.settimeout(30)
        waiting.connect(address.removeprefix("unix:"))  # queued: nobody serves right now
        waiting.sendall(scgi_request())
        second = activated("systemd_apps:environ_report", sockets=[sock], systemd=systemd,
                           model=model)
        servers.append(second)
        answer = parse_answer(read_all(waiting))
    assert answer.status == 200
    sock.close()


def test_systemd_variables_are_not_passed_down_without_socket_activation(model, systemd,
                                                                          serve):
    # Variables set by hand, or for another process: the workers do not see them either.
    server = serve("systemd_apps:environ_report", env=child_env(
        LISTEN_PID="1", LISTEN_FDS="1", LISTEN_FDNAMES="x", NOTIFY_SOCKET=systemd.variable,
        WATCHDOG_USEC="1000000", WATCHDOG_PID="1"))
    systemd.wait_for("READY", "1")
    answer = request(server.address, "/")
    assert json.loads(answer.body) == {"app": [], "child": [], "child_has_fd3": False}


# --- the example unit files -------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]  # unit keys are case-sensitive
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


SERVICES = ["scgikit.service", "scgikit-standalone.service"]


@pytest.mark.parametrize("name", SERVICES)
def test_example_service_is_notify_and_its_command_line_is_valid(name):
    service = unit(name)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillMode"] == "mixed"
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "scgikit" and argv[1] == "serve"
    args = build_parser().parse_args(argv[1:])  # the real parser: an unknown option fails
    config = from_arguments(args, {}, target=args.target)
    # After --graceful-timeout the master kills what is left and waits up to 5 s more.
    assert int(service["TimeoutStopSec"]) > config.graceful_timeout + 5
    assert int(service["WatchdogSec"]) >= 2


def test_socket_activated_service_takes_its_sockets_from_its_socket_unit():
    service, sockets = unit("scgikit.service"), unit("scgikit.socket")
    assert "--bind" not in service["Service"]["ExecStart"]  # else systemd's sockets are unused
    assert "scgikit.socket" in service["Unit"]["Requires"]
    assert sockets["Socket"]["ListenStream"].startswith("/run/")
    assert sockets["Socket"]["FileDescriptorName"] == "scgi"


def test_standalone_service_binds_its_own_socket():
    args = build_parser().parse_args(
        shlex.split(unit("scgikit-standalone.service")["Service"]["ExecStart"])[1:])
    config = from_arguments(args, {}, target=args.target)
    assert [a.path for a in config.addresses] == ["/run/myapp/scgi.sock"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_example_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists: point it to a stand-in.
    program = tmp_path / "scgikit"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    for path in UNITS.iterdir():
        text = path.read_text().replace("/srv/myapp/venv/bin/scgikit", str(program))
        (tmp_path / path.name).write_text(text)
    names = [str(tmp_path / path.name) for path in sorted(UNITS.iterdir())]
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
