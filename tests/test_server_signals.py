"""The master under real signals, with real clients: nothing is lost on a reload or a crash."""

import os
import signal
import threading
import time

import pytest
from scgi_raw import connect, parse_answer, read_all, request
from servers import ServerProcess, app_source, wait_until, worker_pids

from scgikit.protocol import ResponseError, encode_request

# Every scenario on each worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")


class Load:
    """Sends requests one after another from a thread until stopped (bounded in count and time)."""

    def __init__(self, address, uri="/", max_requests=20_000, max_seconds=60.0, threads=2):
        self.address = address
        self.uri = uri
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._max = max_requests
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if len(self.answers) + len(self.failures) >= self._max:
                    return
            try:
                answer = request(self.address, self.uri, timeout=30)
                result = (answer.status, answer.body.decode())
            except OSError as exc:
                result = (0, repr(exc))
            with self._lock:
                if result[0] == 200:
                    self.answers.append(result[1])
                else:
                    self.failures.append(str(result))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def count(self):
        with self._lock:
            return len(self.answers)

    def pids(self):
        with self._lock:
            return set(self.answers)


def workers(server, count, without=()):
    """Wait until the master has ``count`` live workers, none of them in ``without``."""

    def check():
        pids = worker_pids(server.pid)
        return pids if len(pids) == count and pids.isdisjoint(without) else None

    return wait_until(check, timeout=20, message=f"{count} workers")


@pytest.fixture
def pid_server(serve, transport):
    return serve("wsgi_apps:pid", "--workers", "2", bind=[transport])


def test_killed_worker_is_replaced_and_serving_goes_on(pid_server):
    before = workers(pid_server, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = workers(pid_server, 2, without={victim})
    assert after != before
    pid_server.wait_for_log(rf"Worker {victim} was killed by signal 9; replacing it")
    answers = {request(pid_server.address, "/").body for _ in range(20)}
    assert answers <= {str(pid).encode() for pid in after}


def test_reload_under_continuous_load_fails_no_request(serve, transport):
    pid_server = serve("wsgi_apps:pid", "--workers", "2", "--log-level", "debug",
                       bind=[transport])
    # Both serving before the reload (a worker still loading the app would be abandoned,
    # not stopped: on a busy machine loading can take a while).
    pid_server.wait_for_log(r"Worker \d+ ready \(generation 0\)", count=2, timeout=30)
    old = workers(pid_server, 2)
    with Load(pid_server.address) as load:
        wait_until(lambda: load.count() >= 50, timeout=30, message="load before the reload")
        pid_server.send_signal(signal.SIGHUP)
        pid_server.wait_for_log(r"generation 1 ready; stopping 2 old workers", timeout=30)
        wait_until(lambda: worker_pids(pid_server.pid).isdisjoint(old), timeout=30,
                   message="old workers gone")
        seen = load.count()
        wait_until(lambda: load.count() >= seen + 50, timeout=30, message="load after")
    assert load.failures == []
    new = {int(pid) for pid in load.pids()} - old
    assert len(new) >= 1


def test_reload_with_a_broken_app_keeps_the_old_workers(serve, model, tmp_path):
    app = tmp_path / "reloaded.py"
    app.write_text(app_source(model, "b'version 1'"))
    server = serve(f"{app}:app", "--workers", "2", asgi=f"{app}:app")
    assert request(server.address, "/").body == b"version 1"
    app.write_text("raise RuntimeError('broken on purpose')\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("Reload failed", timeout=30)
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}
    app.write_text(app_source(model, "b'version 2'"))
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"generation \d ready", timeout=30)
    wait_until(lambda: request(server.address, "/").body == b"version 2", timeout=30,
               message="the new version to answer")


def test_graceful_stop_lets_the_request_in_flight_finish(serve, transport):
    server = serve("wsgi_apps:slow", "--workers", "1", bind=[transport])
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        answer=request(server.address, "/slow?1.5", timeout=30)))
    thread.start()
    server.wait_for_log("slow request started")
    assert server.stop(signal.SIGTERM) == 0
    thread.join(30)
    assert result["answer"].status == 200
    assert result["answer"].body == b"slow done"


def test_quit_stops_at_once_even_with_a_request_in_flight(serve):
    server = serve("wsgi_apps:slow", "--workers", "1")
    thread = threading.Thread(target=request_raw_or_error, args=(server.address, "/slow?60"),
                              daemon=True)
    thread.start()
    server.wait_for_log("slow request started")
    server.stop(signal.SIGQUIT, timeout=10)
    assert worker_pids(server.pid) == set()


def test_max_requests_recycles_workers_under_load_without_failures(serve, transport):
    server = serve("wsgi_apps:pid", "--workers", "2", "--max-requests", "10",
                   "--max-requests-jitter", "5", bind=[transport])
    with Load(server.address, max_requests=200, threads=4) as load:
        wait_until(lambda: load.count() + len(load.failures) >= 200, timeout=60,
                   message="200 requests")
    assert load.failures == []
    assert len(load.pids()) > 4
    server.wait_for_log("Worker recycled after", count=4)


def test_a_recycling_worker_answers_every_connection_of_its_last_pass_over_the_queue(
        serve, transport):
    # The first request reaches --max-requests; the worker's last pass over the listen
    # queue then takes the other nine, and it ends only once all are answered (on
    # asyncio, some within that pass: at once, on Python 3.12+, the first of them before
    # any other is running; some after a wait).
    server = serve("wsgi_apps:slow", "--workers", "1", "--max-requests", "1",
                   "--log-level", "debug", bind=[transport])
    # Ready: its signal handlers are in place, and the queue is its own.
    worker = int(server.wait_for_log(r"Worker (\d+) ready")[0].group(1))
    os.kill(worker, signal.SIGSTOP)  # the queue fills while the worker cannot accept
    socks = []
    try:
        for query in ["0", "0", "0.1", "0", "0.1", "0", "0.1", "0", "0.1", "0"]:
            sock = connect(server.address)
            sock.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": query}, 0))
            socks.append(sock)
    finally:
        os.kill(worker, signal.SIGCONT)
    answers = [parse_answer(read_all(sock)).body for sock in socks]
    assert answers == [b"slow done"] * 10
    server.wait_for_log(r"Worker recycled after 10 requests")
    for sock in socks:
        sock.close()


def test_ttin_and_ttou_change_the_number_of_workers(pid_server):
    workers(pid_server, 2)
    pid_server.send_signal(signal.SIGTTIN)
    workers(pid_server, 3)
    pid_server.send_signal(signal.SIGTTOU)
    workers(pid_server, 2)  # a second signal sent before this one is handled would merge with it
    pid_server.send_signal(signal.SIGTTOU)
    workers(pid_server, 1)
    assert request(pid_server.address, "/").status == 200


@pytest.mark.models("sync", "asyncio", reason="threads ends the request past --timeout "
                   "itself, not the worker (test_request_timeout.py)")
def test_worker_stuck_past_timeout_is_killed_and_replaced(serve):
    server = serve("wsgi_apps:slow", "--workers", "1", "--timeout", "1")
    stuck = {}
    thread = threading.Thread(target=lambda: stuck.update(
        raw=request_raw_or_error(server.address, "/slow?60")))
    thread.start()
    server.wait_for_log("slow request started")
    server.wait_for_log("stuck on one request for over 1.0s; killing it", timeout=20)
    thread.join(30)
    assert stuck["raw"] == "closed"
    assert request(server.address, "/slow?0").body == b"slow done"


def test_worker_exits_when_its_master_dies(serve):
    server = serve("wsgi_apps:hello", "--workers", "1")
    (worker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    assert request(server.address, "/").body == b"hello"  # it serves: it is past its start
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    wait_until(lambda: not os.path.exists(f"/proc/{worker}") or
               " Z " in open(f"/proc/{worker}/stat").read(), timeout=10,
               message="the orphaned worker to exit")


def request_raw_or_error(address, uri):
    try:
        request(address, uri, timeout=30)
    except ResponseError:
        return "closed"  # an empty answer: the connection closed without a response
    return "answered"


def test_pid_file_is_written_and_removed(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    server = serve("wsgi_apps:hello", "--pid", str(pid_file))
    assert int(pid_file.read_text()) == server.pid
    server.stop()
    assert not pid_file.exists()


def test_env_and_chdir_reach_the_app(serve, tmp_path):
    server = serve("wsgi_apps:env_var", "--env", "GREETING=hi", "--chdir", str(tmp_path))
    assert request(server.address, "/").body == f"hi {tmp_path}".encode()


def test_access_log_line_has_method_uri_status_bytes_duration_and_pid(serve):
    server = serve("wsgi_apps:hello", "--access-log", "-", "--workers", "1")
    request(server.address, "/logged?x=1", env={"REMOTE_ADDR": "192.0.2.7"})
    (match,) = server.wait_for_log(
        r'^192\.0\.2\.7 - - \[[^\]]+\] "GET /logged\?x=1 HTTP/1\.1" 200 (\d+) "-" "-" '
        r"(\d+\.\d{6}) pid=(\d+)$")
    assert int(match.group(1)) > 0
    assert int(match.group(3)) in worker_pids(server.pid)


@pytest.mark.models("sync", reason="the app fails as it loads, before any worker model is "
                   "chosen (the last two cases choose theirs)")
@pytest.mark.parametrize("target, message", [
    ("broken_app:app", "this app cannot be imported"),
    ("no_such_module:app", "no module named 'no_such_module'"),
    ("wsgi_apps:nothing", "has no 'nothing'"),
    ("wsgi_apps:asgi_app --worker sync", "an ASGI app needs --worker asyncio"),
    ("wsgi_apps:hello --worker asyncio", "--worker asyncio serves ASGI apps; this is a wsgi"),
])
def test_app_that_cannot_load_stops_the_server_with_a_clear_message(target, message):
    target, *args = target.split()
    server = ServerProcess.scgikit(target, "--workers", "2", *args).start()
    assert server.proc.wait(30) == 4
    server.wait_for_log(message)
    server.wait_for_log("Worker failed to boot; stopping")
