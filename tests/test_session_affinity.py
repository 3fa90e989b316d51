"""--session-affinity: one session's requests on one worker, in order, one at a time.

Each test runs on every worker model and over TCP and a unix socket.  The app
(fixtureapps/session_apps.py) answers its pid and logs when a slow request starts
and ends, so the order and the overlap of a session's requests are read from the log.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import termios
import threading

import pytest
from scgi_raw import connect, parse_answer, read_all, request
from servers import ServerProcess, listen_queue, wait_until, worker_pids

from scgikit.master.sessions import SessionTable
from scgikit.protocol import encode_request

pytestmark = pytest.mark.usefixtures("model")

APP = "session_apps:app"


@pytest.fixture(params=["tcp", "unix"])
def transport(request, tmp_path):
    if request.param == "tcp":
        return "127.0.0.1:0"
    return f"unix:{tmp_path}/scgi.sock"


def cookie(session: str) -> dict[str, str]:
    return {"HTTP_COOKIE": f'theme="dark"; session="{session}"'}


def get(address: str, uri: str, session: str | None = None) -> tuple[int, str]:
    answer = request(address, uri, env=cookie(session) if session else None)
    return answer.status, answer.body.decode()


def read_by_peer(sock: socket.socket) -> bool:
    """Whether the server has read all ``sock`` sent: a unix socket's unread bytes are in
    its send queue (TIOCOUTQ); a TCP connection's, in the receive queue of the server's end
    (ss), the client's own queue emptying as soon as the kernel acknowledges them."""
    if sock.family == socket.AF_UNIX:
        return fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0") == b"\0\0\0\0"
    here, there = sock.getsockname()[1], sock.getpeername()[1]
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{there} and "
                          f"dport = :{here} )"], capture_output=True, text=True, check=True)
    lines = out.stdout.split("\n")
    return bool(out.stdout.strip()) and all(line.split()[0] == "0" for line in lines if line)


def send_only(address: str, uri: str, session: str) -> socket.socket:
    """A request sent whole, its answer left to read later."""
    path, _, query = uri.partition("?")
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "DOCUMENT_URI": path,
                 "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "test",
                 "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", **cookie(session)}
    sock = connect(address)
    sock.sendall(encode_request(variables, 0))
    return sock


def answer_of(sock: socket.socket) -> tuple[int, str]:
    with sock:
        answer = parse_answer(read_all(sock))
    return answer.status, answer.body.decode()


def wait_ready(server: ServerProcess, workers: int) -> None:
    """Every worker has said ready (the master's debug log)."""
    server.wait_for_log(r"Worker \d+ ready", count=workers, timeout=20)


def test_each_session_stays_on_one_worker(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    pids: dict[str, set[str]] = {}
    for _ in range(4):
        for session in ("alpha", "beta", "gamma"):
            status, pid = get(server.address, "/pid", session)
            assert status == 200
            pids.setdefault(session, set()).add(pid)
    assert all(len(seen) == 1 for seen in pids.values()), pids
    # The first two sessions came while both workers were free: one each.
    assert pids["alpha"] != pids["beta"]
    assert {pid for seen in pids.values() for pid in seen} <= {
        str(pid) for pid in worker_pids(server.pid)}


def test_a_sessions_requests_run_one_at_a_time_in_arrival_order(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    sockets = []
    for number in range(4):
        sockets.append(send_only(server.address, f"/slow?0.2&{number}", "ordered"))
        # The next is sent once the master has read this one: in the app or queued behind.
        wait_until(lambda: read_by_peer(sockets[-1]), message=f"request {number} read")
    answers = [answer_of(sock) for sock in sockets]
    assert {status for status, _ in answers} == {200}
    assert len({pid for _, pid in answers}) == 1
    server.wait_for_log(r"end 3 ")
    events = [line.split()[:2] for line in server.log.splitlines()
              if re.match(r"(start|end) \d ", line)]
    assert events == [[what, str(n)] for n in range(4) for what in ("start", "end")], events


def test_a_busy_session_does_not_hold_back_another(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    busy = [send_only(server.address, f"/slow?1&{n}", "busy") for n in range(3)]
    server.wait_for_log(r"start 0 ", timeout=10)
    status, pid = get(server.address, "/pid", "other")
    assert status == 200
    # Answered while the busy session still runs its first request.
    assert "end 0" not in server.log
    answers = [answer_of(sock) for sock in busy]
    assert {status for status, _ in answers} == {200}
    assert pid not in {busy_pid for _, busy_pid in answers}


def greedy_session(serve, transport):
    """One worker whose session queue holds one request, and a session's first request
    running in it (for a second): the server and that request's socket."""
    server = serve(APP, "--session-affinity", "-w", "1", "--session-queue", "1",
                   "--log-level", "debug", bind=[transport])
    wait_ready(server, 1)
    running = send_only(server.address, "/slow?1&0", "greedy")
    server.wait_for_log(r"start 0 ", timeout=10)
    return server, running


def test_a_session_past_its_queue_is_answered_503(serve, transport):
    server, running = greedy_session(serve, transport)
    # Two more while it runs: one waits its turn, one is refused (which one is the order
    # in which their heads reach the master).
    more = [send_only(server.address, f"/slow?0&{n}", "greedy") for n in (1, 2)]
    assert answer_of(running)[0] == 200
    statuses = [answer_of(sock)[0] for sock in more]
    assert sorted(statuses) == [200, 503]
    server.wait_for_log("--session-queue")
    refused = 1 + statuses.index(503)
    assert f"start {refused} " not in server.log


def test_a_refused_request_that_waited_for_its_bytes_gets_its_503_whole(serve, transport):
    # The master only looks at a request (the worker reads it); one it refuses, it reads off
    # before the close, head and body: a request that waited for its bytes counted once
    # only its body, and the close with the head unread reset the connection over the 503.
    server, running = greedy_session(serve, transport)
    queued = send_only(server.address, "/slow?0&1", "greedy")
    # Accepted, then looked at and queued in the same pass of the master's accept loop.
    wait_until(lambda: listen_queue(server.address) == 0, message="the second accepted")
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/slow?0&2", "QUERY_STRING": "0&2",
                 "SERVER_PROTOCOL": "HTTP/1.1", **cookie("greedy")}
    data = encode_request(variables, 0)
    late = connect(server.address)
    late.sendall(data[:5])  # accepted with 5 bytes: it waits in the master's room
    wait_until(lambda: listen_queue(server.address) == 0, message="the connection accepted")
    late.sendall(data[5:])
    assert answer_of(late) == (503, "503 Service Unavailable\n")
    assert answer_of(running)[0] == answer_of(queued)[0] == 200


def test_without_a_cookie_the_session_is_the_client_address(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    seen = {request(server.address, "/pid", env={"REMOTE_ADDR": "192.0.2.7"}).body
            for _ in range(5)}
    assert len(seen) == 1


def test_a_new_session_cookie_starts_on_the_worker_its_address_was_on(serve, transport):
    """A login: the first request has no cookie (its session is the client's address), the
    answer sets one; the app made that session where the login ran, so it starts there."""
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    other = {"REMOTE_ADDR": "192.0.2.1"}
    request(server.address, "/pid", env=other)  # another client takes a worker first
    for number in range(4):
        address = {"REMOTE_ADDR": f"198.51.100.{number}"}
        login = request(server.address, "/pid", env=address).body
        after = request(server.address, "/pid", env=address | cookie(f"new{number}")).body
        assert after == login


def test_reload_and_stop_lose_no_request_of_any_session(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def session(name: str, count: int) -> None:
        for _ in range(count):
            outcome = get(server.address, "/slow?0.05&9", name)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=session, args=(f"s{n}", 12)) for n in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(results) >= 4, timeout=20)
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload: generation 1 ready", timeout=30)
    for thread in threads:
        thread.join(60)
    assert len(results) == 48 and {status for status, _ in results} == {200}, results
    # After the reload each session settles on one new worker again.
    after = {get(server.address, "/pid", "s0")[1] for _ in range(3)}
    assert len(after) == 1
    # A full stop serves what was sent before it: every queued request is answered.
    queued = [send_only(server.address, f"/slow?0.2&{n}", "last") for n in range(3)]
    server.wait_for_log(r"start 0 ", timeout=10, start=len(server.lines) - 1)
    server.send_signal(signal.SIGINT)
    assert [answer_of(sock)[0] for sock in queued] == [200, 200, 200]
    assert server.proc is not None and server.proc.wait(30) == 0


def test_recycled_workers_lose_no_request_and_their_sessions_move(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--max-requests", "3",
                   "--log-level", "debug", bind=[transport])
    wait_ready(server, 2)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def session(name: str) -> None:
        for _ in range(6):
            outcome = get(server.address, "/slow?0.01&9", name)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=session, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 24 and {status for status, _ in results} == {200}, results
    server.wait_for_log(r"Worker recycled after \d+ requests")  # 3, and what it was sent
    assert len({pid for _, pid in results}) > 2  # served by the replacements too


def test_a_killed_worker_hands_its_sessions_to_another(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "2", "--log-level", "debug",
                   bind=[transport])
    wait_ready(server, 2)
    _, first = get(server.address, "/pid", "moving")
    os.kill(int(first), signal.SIGKILL)
    server.wait_for_log(rf"Worker {first} .*replacing it")
    status, second = get(server.address, "/pid", "moving")
    assert status == 200 and second != first


@pytest.mark.models("sync", reason="a setting refused before any worker starts")
@pytest.mark.parametrize("pattern, says", [("session=(", "--session-pattern"),
                                           ("session=(\\w+)", "no group named id")])
def test_a_session_pattern_without_an_id_group_is_refused(pattern, says):
    server = ServerProcess.scgikit(APP, "--session-affinity", "--session-pattern", pattern)
    server.start(ready=None)
    assert server.proc is not None
    assert server.proc.wait(20) == 2
    server.wait_for_log(re.escape(says))
    assert "Traceback" not in server.log


@pytest.mark.models("sync", reason="the master's table of sessions, without a server")
def test_idle_sessions_are_forgotten_past_the_cap_or_after_max_age():
    table = SessionTable(most=3, max_age=100.0)
    for number, key in enumerate("abc"):
        table.find(key, now=float(number))
    busy = table.find("a", now=3.0)  # used again: now the most recent
    busy.running = 7
    table.find("d", now=4.0)  # past the cap: the least recent idle one goes
    assert [s.key for s in table.values()] == ["c", "a", "d"]
    table.find("e", now=200.0)  # c idle for over max_age goes; a, which runs, stays
    assert [s.key for s in table.values()] == ["a", "d", "e"]
    busy.running = 0
    table.find("f", now=300.0)  # from the least recent on, every idle one too old goes
    assert [s.key for s in table.values()] == ["f"]


def test_a_silent_client_never_holds_the_master(serve, transport):
    server = serve(APP, "--session-affinity", "-w", "1", "--header-timeout", "1",
                   "--log-level", "debug", bind=[transport])
    wait_ready(server, 1)
    silent = connect(server.address)
    silent.sendall(b"70:CONTENT_LENGTH\0")  # a head begun, never finished
    assert get(server.address, "/pid", "meanwhile")[0] == 200
    silent.settimeout(10)
    try:  # closed at --header-timeout: reset, as the master had only looked at its bytes
        assert silent.recv(100) == b""
    except ConnectionResetError:
        pass
    silent.close()


@pytest.mark.models("sync", reason="the classic session server serves classic handlers")
def test_the_classic_session_server_keeps_sessions_and_its_queue_bound(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(
        "import os, sys, time\n"
        "from scgikit import session_server\n"
        "class Handler(session_server.SCGIHandler):\n"
        "    def produce(self, env, bodysize, input, output):\n"
        "        if env['DOCUMENT_URI'] == '/slow':\n"
        "            time.sleep(1)\n"
        "        output.write('Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n')\n"
        "        output.write(str(os.getpid()))\n"
        "class Server(session_server.SCGIServer):\n"
        "    MAX_QUEUE = 1\n"
        "Server(Handler, host='127.0.0.1', port=int(sys.argv[1]), max_children=2).serve()\n")
    import sys

    from servers import free_port

    port = free_port()
    server = ServerProcess([sys.executable, str(script), str(port)], cwd=tmp_path).start()
    address = f"127.0.0.1:{port}"
    try:
        pids = {get(address, "/pid", "classic")[1] for _ in range(4)}
        assert len(pids) == 1
        first = send_only(address, "/slow", "classic")
        wait_until(lambda: get(address, "/pid", "other")[0] == 200)
        more = [send_only(address, "/slow", "classic") for _ in range(2)]
        assert answer_of(first)[0] == 200
        assert sorted(answer_of(sock)[0] for sock in more) == [200, 503]
    finally:
        server.stop()
