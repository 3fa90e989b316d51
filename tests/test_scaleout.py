"""Scale-out across hosts: three `scgikit serve` backends behind one nginx, under load.

Each host is a network namespace joined to a bridge (the "switch", a namespace of its
own), so the backends, nginx and the client talk over real TCP between distinct
addresses, as separate machines would:

    sk<pid>b1..b3   a backend each: `scgikit serve APP --bind 10.N.0.1..3:4000`
    sk<pid>ng       nginx at 10.N.0.10:80, running the text `scgikit config nginx` prints
    sk<pid>cl       the client at 10.N.0.20: this file, run as a load generator

The app answers with its backend's name and worker pid, so each answer says who served it.
Every namespace, interface and process is removed by the module fixture's finalizer. The
load is bounded in count and time; every wait is on a condition with a deadline.

Run as a script (``python3 test_scaleout.py load URL ...``) this file is the load client.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from frontends import _nginx_harness, available
from servers import ServerProcess, child_env, wait_until, worker_pids

PID = os.getpid()
NET = f"10.{100 + PID % 150}.0"  # private, and only ever inside the namespaces below
BACKENDS = {"b1": f"{NET}.1", "b2": f"{NET}.2", "b3": f"{NET}.3"}
NGINX_ADDRESS, CLIENT_ADDRESS = f"{NET}.10", f"{NET}.20"
PORT = 4000
FAIL_TIMEOUT = 2  # nginx leaves a failed backend out this long (the default 10s, shortened)
ANSWER = re.compile(r"^answer (\d+) (GET|POST) (\S+) ?(.*)$")

APP = '''\
"""Answers with the backend's name and worker pid.

?tag=T logs "in flight: T"; with &on=NAME&pause=S backend NAME holds the request S seconds.
"""
import os
import time
from urllib.parse import parse_qs

NAME = os.environ["SCALEOUT_BACKEND"]


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    body = environ["wsgi.input"].read()
    if "tag" in query:
        print("in flight: " + query["tag"][0], file=environ["wsgi.errors"], flush=True)
    if query.get("on") == [NAME]:
        time.sleep(float(query["pause"][0]))
    answer = f"{NAME} {os.getpid()} {environ['REQUEST_METHOD']} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(answer)))])
    return [answer]
'''


# --- the load client (runs inside the client namespace) ----------------------------------------

def fetch(url: str, method: str, number: int) -> str:
    """One request; the line the client prints for it: ``answer N METHOD STATUS BODY``."""
    parts = urlsplit(url)
    body = b"p" * (1000 + number % 100) if method == "POST" else None
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body)
        response = conn.getresponse()
        text = " ".join(response.read().decode(errors="replace").split())  # one line
        status = str(response.status)
        if status == "200" and not text.endswith(f" {method} {len(body or b'')}"):
            status = "garbled"  # the answer must be for this request, body and all
    except OSError as exc:
        status, text = "error", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return f"answer {number} {method} {status} {text}"


def load(url: str, mix: str, concurrency: int, max_requests: int, max_seconds: float) -> int:
    """Requests from ``concurrency`` threads until SIGTERM, ``max_requests`` or ``max_seconds``.

    ``mix`` is ``get``, ``post`` (with a body) or ``mixed`` (every other request a POST).
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    numbers = itertools.count()
    lock = threading.Lock()

    def run() -> None:
        while not stop.is_set():
            number = next(numbers)
            if number >= max_requests:
                stop.set()
                return
            method = "POST" if mix == "post" or (mix == "mixed" and number % 2) else "GET"
            line = fetch(url, method, number)
            with lock:
                print(line, file=sys.stderr, flush=True)

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    print("load started", file=sys.stderr, flush=True)
    for thread in threads:
        thread.start()
    stop.wait(max_seconds)
    stop.set()
    for thread in threads:
        thread.join()
    print("load done", file=sys.stderr, flush=True)
    return 0


# --- the hosts ---------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _why_no_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"sk{PID}probe"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"cannot make a network namespace: {exc}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Network:
    """Namespaces on one bridge; ``close`` removes them (and with them every veth)."""

    made: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"sk{PID}{host}"

    def build(self) -> None:
        switch = self.ns("sw")
        self._add(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        hosts = {**BACKENDS, "ng": NGINX_ADDRESS, "cl": CLIENT_ADDRESS}
        for host, address in hosts.items():
            ns = self.ns(host)
            self._add(ns)
            # Made inside the namespaces: no name is ever taken in the host's own.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", host,
                "netns", switch)
            _ip("-n", switch, "link", "set", host, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # The load opens a connection per request, thousands a second: let a port in
            # TIME_WAIT be used again, as a busy host would (these settings are per namespace).
            for setting in ("net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000"):
                _ip("netns", "exec", ns, "sysctl", "-q", "-w", setting)

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()

    def exec(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]


class Cluster:
    """Three backends and nginx on ``net``; every process started is stopped by ``close``."""

    def __init__(self, net: Network, folder: Path) -> None:
        self.net = net
        self.folder = folder
        self.app = folder / "scaleout_app.py"
        self.app.write_text(APP)
        self.backends: dict[str, ServerProcess] = {}  # the running one of each name
        self.incarnations: list[tuple[str, ServerProcess]] = []  # every one ever started
        self.started: list[ServerProcess] = []
        self.requests: list[subprocess.Popen[str]] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.config = ""

    # backends

    def start(self, name: str) -> ServerProcess:
        argv = [*self.net.exec(name), sys.executable, "-m", "scgikit", "serve",
                f"{self.app}:app", "--bind", f"{BACKENDS[name]}:{PORT}", "--workers", "2",
                "--worker", "threads", "--threads", "4", "--allow-from", NGINX_ADDRESS]
        server = ServerProcess(argv, env=child_env(SCALEOUT_BACKEND=name))
        self.started.append(server)
        self.incarnations.append((name, server))
        self.backends[name] = server.start()
        return server

    def kill(self, name: str) -> None:
        """SIGKILL the master, then every worker: no goodbye, as when a host dies."""
        master = self.backends[name]
        workers = worker_pids(master.pid)
        os.kill(master.pid, signal.SIGKILL)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert master.proc
        master.proc.wait(10)
        wait_until(lambda: all(_gone(pid) for pid in workers), timeout=10,
                   message="the killed workers to be gone")

    def running(self, name: str) -> bool:
        server = self.backends.get(name)
        return bool(server and server.proc and server.proc.poll() is None)

    # nginx, from the text `scgikit config nginx` prints

    def configure_nginx(self, down: tuple[str, ...] = ()) -> Path:
        """Write nginx.conf around what ``scgikit config nginx`` prints for the three."""
        command = [sys.executable, "-m", "scgikit", "config", "nginx",
                   "--fail-timeout", str(FAIL_TIMEOUT)]
        for address in BACKENDS.values():
            command += ["--bind", f"{address}:{PORT}"]
        for name in down:
            command += ["--down", f"{BACKENDS[name]}:{PORT}"]
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(),
                              timeout=30, check=True)
        self.config = done.stdout
        folder = self.folder / "nginx"
        folder.mkdir(exist_ok=True)
        self.nginx_argv = _nginx_harness(folder, 80, self.config, host=NGINX_ADDRESS)
        return folder

    def start_nginx(self) -> None:
        folder = self.configure_nginx()
        self.nginx = subprocess.Popen([*self.net.exec("ng"), *self.nginx_argv],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        # nginx writes its pid file once it listens.
        wait_until(lambda: self.nginx.poll() is not None or (folder / "nginx.pid").exists(),
                   timeout=20, message="nginx to listen")
        if self.nginx.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.nginx.stderr.read().decode()}\n"
                               f"{self.nginx_log}\n{self.config}")

    def reload_nginx(self, down: tuple[str, ...] = ()) -> None:
        """``nginx -s reload`` with backends ``down`` marked down; returns once every old
        nginx worker (which may still send to them) has finished and exited."""
        assert self.nginx
        self.configure_nginx(down)
        old = worker_pids(self.nginx.pid)
        self.nginx.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            new = worker_pids(self.nginx.pid)
            return bool(new) and not new & old
        wait_until(reloaded, timeout=20, message=f"nginx to reload with {down} down")

    @property
    def nginx_log(self) -> str:
        """What nginx logged about its backends (its error log, less the chatter)."""
        path = self.folder / "nginx" / "error.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(line for line in text.splitlines() if "upstream" in line)

    # the client

    def load(self, mix: str = "get", path: str = "/") -> Load:
        argv = [*self.net.exec("cl"), sys.executable, __file__, "load",
                f"http://{NGINX_ADDRESS}{path}", mix, "4", "200000", "50"]
        process = ServerProcess(argv, env=child_env())
        self.started.append(process)
        return Load(process.start(ready="load started"))

    def once(self, method: str, query: str) -> subprocess.Popen[str]:
        """One request from the client host, in the background; its answer line on stdout."""
        return subprocess.Popen([*self.net.exec("cl"), sys.executable, __file__, "once",
                                 method, f"http://{NGINX_ADDRESS}/?{query}"],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=child_env(), text=True)

    def pin(self, name: str, method: str, pause: float) -> tuple[subprocess.Popen[str], str]:
        """A request held ``pause`` seconds on backend ``name``, in flight there on return.

        nginx picks the backend, so tagged requests go until one reaches ``name``; on the
        others the app answers at once (it holds only where ``on`` names it)."""
        for attempt in range(40):
            tag = f"{name}-{method}-{attempt}"
            request = self.once(method, f"tag={tag}&on={name}&pause={pause}")
            self.requests.append(request)
            holders = wait_until(lambda tag=tag: self.holders(tag), timeout=20,
                                 message=f"request {tag} to reach a backend")
            if holders == [name]:
                return request, tag
            answer_of(request)
        raise AssertionError(f"40 requests through nginx and none reached {name}")

    def holders(self, tag: str) -> list[str]:
        """The backends that received request ``tag``, once each time nginx sent it."""
        return sorted(name for name, server in self.incarnations
                      if f"in flight: {tag}" in server.log)

    def request(self, host: str, backend: str) -> subprocess.CompletedProcess[str]:
        """``scgikit request -f ADDRESS /`` from ``host``, straight to ``backend`` (no nginx)."""
        return subprocess.run([*self.net.exec(host), sys.executable, "-m", "scgikit", "request",
                               "-f", "-m", "10", f"{BACKENDS[backend]}:{PORT}", "/"],
                              capture_output=True, text=True, env=child_env(), timeout=30)

    def close(self) -> None:
        for request in self.requests:
            if request.poll() is None:
                request.kill()
            request.wait(10)
        if self.nginx and self.nginx.poll() is None:
            os.killpg(self.nginx.pid, signal.SIGKILL)
            self.nginx.wait(10)
        for server in self.started:
            if server.proc and server.proc.poll() is None:
                workers = worker_pids(server.pid)
                server.proc.kill()
                for pid in workers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                server.proc.wait(10)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie has: it only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Load:
    """A running load client and the answers it has printed so far."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process

    def answers(self, start: int = 0) -> list[tuple[str, str, str, str]]:
        """(number, method, status, body) of each answer printed from line ``start`` on."""
        return [(m[1], m[2], m[3], m[4]) for line in self.process.lines[start:]
                if (m := ANSWER.match(line))]

    @property
    def mark(self) -> int:
        """A point in the output: answers after it were printed later."""
        return len(self.process.lines)

    def wait_answers(self, count: int, start: int = 0, timeout: float = 30) -> None:
        self.process.wait_for_log(r"^answer ", timeout=timeout, count=count, start=start)

    def wait_served_by(self, name: str, server: ServerProcess | None = None, start: int = 0,
                       count: int = 1, timeout: float = 30) -> None:
        """Wait for ``count`` answers from ``name`` (from ``server``'s workers, if given: they
        may still be starting) printed after line ``start``."""
        def served() -> bool:
            pids = worker_pids(server.pid) if server else set()
            found = [body for _, _, status, body in self.answers(start)
                     if status == "200" and body.split()[0] == name
                     and (server is None or int(body.split()[1]) in pids)]
            return len(found) >= count
        wait_until(served, timeout=timeout, interval=0.05,
                   message=f"{count} answers from {name}")

    def finish(self) -> list[tuple[str, str, str, str]]:
        """Stop the load; its answers, and a line of figures on stdout (pytest -s shows it)."""
        assert self.process.stop(signal.SIGTERM, timeout=40) == 0, self.process.log[-2000:]
        self.process.wait_for_log("^load done")
        answers = self.answers()
        methods = {m: sum(1 for a in answers if a[1] == m) for m in ("GET", "POST")}
        print(f"\nload: {len(answers)} requests {methods}, {len(failures(answers))} failed, "
              f"served by {dict(sorted(backends_of(answers).items()))}")
        return answers


def failures(answers: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    return [answer for answer in answers if answer[2] != "200"]


def backends_of(answers: list[tuple[str, str, str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, status, body in answers:
        if status == "200":
            counts[body.split()[0]] = counts.get(body.split()[0], 0) + 1
    return counts


def answer_of(request: subprocess.Popen[str]) -> tuple[str, str, str, str]:
    out, _ = request.communicate(timeout=30)
    m = ANSWER.match(out.strip())
    assert m, out
    return (m[1], m[2], m[3], m[4])


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hosts():
    reason = _why_no_namespaces() or available("nginx")
    if reason:
        pytest.skip(reason)
    net = Network()
    folder = Path(tempfile.mkdtemp(prefix="scgikit-scaleout-"))
    cluster = Cluster(net, folder)
    try:
        net.build()
        for name in BACKENDS:
            cluster.start(name)
        cluster.start_nginx()
        yield cluster
    finally:
        cluster.close()
        net.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(hosts):
    """All three backends running and answering through nginx, whatever the last test did."""
    for name in BACKENDS:
        if not hosts.running(name):
            hosts.start(name)
    probe = hosts.load("get")
    try:
        for name, server in hosts.backends.items():
            probe.wait_served_by(name, server, timeout=FAIL_TIMEOUT + 20)
    finally:
        probe.finish()
    return hosts


# --- the scenarios -----------------------------------------------------------------------------

def test_requests_spread_over_all_three_hosts_behind_the_generated_upstream(cluster):
    assert f"server {NET}.2:{PORT} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;" in cluster.config
    for name, address in BACKENDS.items():
        # The hint starts each backend on its own host, as this test does.
        assert f"on {address}: scgikit serve APP --bind {address}:{PORT}" in cluster.config
        assert f"Listening at: {address}:{PORT}" in cluster.backends[name].log
        # --allow-from: the nginx host may talk to it, the client host may not.
        direct = cluster.request("ng", name)
        assert direct.returncode == 0 and direct.stdout.startswith(f"{name} "), direct.stderr
        assert cluster.request("cl", name).returncode in (52, 56)  # closed, not answered
        cluster.backends[name].wait_for_log(f"Refused a connection from {CLIENT_ADDRESS}")
    load = cluster.load("get")
    for name in BACKENDS:
        load.wait_served_by(name, count=30)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]
    assert set(backends_of(answers)) == set(BACKENDS)


def test_graceful_stop_during_get_load_loses_no_request(cluster):
    load = cluster.load("get")
    load.wait_answers(40)
    held, tag = cluster.pin("b2", "POST", pause=2)  # in flight on b2 when it is told to stop
    assert cluster.backends["b2"].stop(signal.SIGTERM, timeout=30) == 0
    load.wait_answers(200, start=load.mark)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]
    # The held POST was finished by b2 itself, after the stop began.
    _, method, status, body = answer_of(held)
    assert (method, status, body.split()[0]) == ("POST", "200", "b2")
    assert cluster.holders(tag) == ["b2"]


def test_graceful_stop_during_post_load_loses_no_post(cluster):
    load = cluster.load("post")
    load.wait_answers(40)
    cluster.pin("b2", "GET", pause=2)  # keeps b2 stopping for a while
    cluster.backends["b2"].stop(signal.SIGTERM, timeout=30)
    load.wait_answers(200, start=load.mark)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]


def test_killed_backend_costs_only_its_in_flight_post_and_get_load_loses_none(cluster):
    load = cluster.load("get")
    load.wait_answers(40)
    # Held for longer than the test runs: both are in flight on b3 when it dies.
    held_get, get_tag = cluster.pin("b3", "GET", pause=60)
    held_post, post_tag = cluster.pin("b3", "POST", pause=60)
    cluster.kill("b3")
    load.wait_answers(200, start=load.mark)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]
    # nginx sent the GET in flight on b3 to another backend, which answered it...
    _, _, status, body = answer_of(held_get)
    assert status == "200" and body.split()[0] in ("b1", "b2")
    assert cluster.holders(get_tag) == sorted(["b3", body.split()[0]])
    # ...and did not send the POST again (b3 may have acted on it): that one is the cost.
    _, _, status, _ = answer_of(held_post)
    assert status == "502"
    assert cluster.holders(post_tag) == ["b3"]


def test_restarted_backend_rejoins(cluster):
    load = cluster.load("get")
    load.wait_answers(40)
    cluster.kill("b1")
    load.wait_answers(50, start=load.mark)
    server = cluster.start("b1")
    # nginx tries it again once fail_timeout has passed, and it answers.
    load.wait_served_by("b1", server, start=load.mark, count=10,
                        timeout=FAIL_TIMEOUT + 20)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]


def test_a_host_that_vanishes_costs_a_connect_timeout_not_a_request(cluster):
    load = cluster.load("get")
    load.wait_answers(40)
    # b2's cable is pulled: its packets go nowhere, nothing refuses or resets.
    _ip("-n", cluster.net.ns("b2"), "link", "set", "eth0", "down")
    try:
        wait_until(lambda: "upstream timed out (110: Connection timed out) while connecting"
                   in cluster.nginx_log, timeout=20, message="nginx's connect to b2 to time out")
        load.wait_answers(200, start=load.mark)
    finally:
        _ip("-n", cluster.net.ns("b2"), "link", "set", "eth0", "up")
    load.wait_served_by("b2", start=load.mark, timeout=FAIL_TIMEOUT + 20)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]


def test_rolling_restart_of_all_three_fails_no_get(cluster):
    load = cluster.load("get")
    load.wait_answers(40)
    for name in BACKENDS:
        assert cluster.backends[name].stop(signal.SIGTERM, timeout=30) == 0
        server = cluster.start(name)
        # Serving again through nginx (from the new workers) before the next one stops.
        load.wait_served_by(name, server, timeout=FAIL_TIMEOUT + 20)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]


def test_rolling_restart_drained_at_nginx_first_fails_no_request_not_even_a_post(cluster):
    load = cluster.load("mixed")
    load.wait_answers(40)
    for name in BACKENDS:
        cluster.reload_nginx(down=(name,))  # nginx sends it nothing new from here on
        assert cluster.backends[name].stop(signal.SIGTERM, timeout=30) == 0
        server = cluster.start(name)
        assert cluster.request("ng", name).returncode == 0  # answers before nginx sends to it
        cluster.reload_nginx()
        load.wait_served_by(name, server, timeout=20)
    answers = load.finish()
    assert failures(answers) == [], cluster.nginx_log[-3000:]
    assert {method for _, method, _, _ in answers} == {"GET", "POST"}


if __name__ == "__main__":
    if sys.argv[1] == "load":  # load URL MIX CONCURRENCY MAX_REQUESTS MAX_SECONDS
        sys.exit(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                      float(sys.argv[6])))
    print(fetch(sys.argv[3], sys.argv[2], 0), flush=True)  # once METHOD URL
