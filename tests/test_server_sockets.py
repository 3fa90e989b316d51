"""Where the server listens: TCP, IPv6, unix sockets, inherited descriptors, systemd.

Each socket a server serves on is served on every worker model (conftest.py: model);
a mistake the master refuses before any worker exists is checked once.
"""

import select
import socket
import stat
import subprocess
import sys

import pytest
from scgi_raw import request
from servers import ServerProcess, child_env, for_model

from scgikit.master.listeners import Listener, systemd_listeners


def test_unix_socket_gets_the_default_mode_and_is_removed_at_exit(serve, model, tmp_path):
    path = tmp_path / "app.sock"
    server = serve("wsgi_apps:hello", bind=[f"unix:{path}"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert request(server.address, "/").body == b"hello"
    assert server.stop() == 0
    assert not path.exists()


def test_socket_mode_option_sets_the_permissions(serve, tmp_path):
    path = tmp_path / "app.sock"
    serve("wsgi_apps:hello", "--socket-mode", "0600", bind=[f"unix:{path}"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_stale_socket_file_is_replaced(serve, model, tmp_path):
    path = tmp_path / "app.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a crashed server leaves
    server = serve("wsgi_apps:hello", bind=[f"unix:{path}"])
    assert request(server.address, "/").body == b"hello"
    server.wait_for_log("Removing stale socket file")


def test_socket_of_a_running_server_is_not_taken_over(serve, model, tmp_path):
    path = tmp_path / "app.sock"
    first = serve("wsgi_apps:hello", bind=[f"unix:{path}"])
    second = ServerProcess.scgikit("wsgi_apps:hello", bind=[f"unix:{path}"]).start(ready=None)
    assert second.proc.wait(30) == 2
    second.wait_for_log(f"unix:{path} is in use by a running server")
    assert request(first.address, "/").body == b"hello"


def test_regular_file_in_the_way_is_not_deleted(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    server = ServerProcess.scgikit("wsgi_apps:hello", bind=[f"unix:{path}"]).start(ready=None)
    assert server.proc.wait(30) == 2
    server.wait_for_log("exists and is not a socket; not replacing it")
    assert path.read_text() == "precious"


def test_tcp_and_unix_at_once(serve, model, tmp_path):
    server = serve("wsgi_apps:hello", bind=["127.0.0.1:0", f"unix:{tmp_path}/s.sock"])
    for address in server.addresses:
        assert request(address, "/").body == b"hello"


def test_ipv6_loopback(serve, model):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 is not usable here: {exc}")
    server = serve("wsgi_apps:hello", bind=["[::1]:0"])
    assert server.address.startswith("[::1]:")
    assert request(server.address, "/").body == b"hello"


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess.scgikit("wsgi_apps:hello", bind=[f"127.0.0.1:{port}"])
        server.start(ready=None)
        assert server.proc.wait(30) == 2
        server.wait_for_log(rf"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_unparseable_bind_is_refused_before_starting():
    result = subprocess.run([sys.executable, "-m", "scgikit", "serve", "wsgi_apps:hello",
                             "--bind", "::1:80"], env=child_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "write IPv6 addresses in brackets" in result.stderr
    assert "Traceback" not in result.stderr


def listening_socket():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_inherited_descriptor_fd_url(model):
    with listening_socket() as sock:
        fd = sock.fileno()
        target, args = for_model(model, "wsgi_apps:hello")
        server = ServerProcess.scgikit(target, *args, bind=[f"fd://{fd}"])
        server.start(ready=rf"Listening at: fd://{fd} \(127\.0\.0\.1:\d+\)", pass_fds=[fd])
        try:
            host, port = sock.getsockname()
            assert request(f"{host}:{port}", "/").body == b"hello"
        finally:
            assert server.stop() == 0


def test_systemd_socket_activation(model):
    with listening_socket() as sock:
        # sd_listen_fds(3): descriptors from 3 on, and LISTEN_PID naming the server's own
        # pid, which only its own process knows: a launcher sets it, then execs the server.
        launcher = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); "
            "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
            "os.execv(sys.executable, [sys.executable, '-m', 'scgikit', 'serve', "
            "*sys.argv[2:]])")
        target, args = for_model(model, "wsgi_apps:hello")
        server = ServerProcess([sys.executable, "-c", launcher, str(sock.fileno()), target,
                                *args])
        server.start(ready=r"Listening at: systemd fd 3", pass_fds=[sock.fileno()])
        try:
            host, port = sock.getsockname()
            assert request(f"{host}:{port}", "/").body == b"hello"
        finally:
            assert server.stop() == 0


def test_systemd_sockets_meant_for_another_process_are_ignored():
    assert systemd_listeners({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) == []
    assert systemd_listeners({}) == []


def _handshake_done(sock: socket.socket, within: float) -> bool:
    """Whether a non-blocking connect completes (the socket becomes writable) in time."""
    return bool(select.select([], [sock], [], within)[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_stopping_listener_starts_no_handshake_and_keeps_its_queue(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        sock.listen(16)
        listener = Listener(sock, "test")
        address = sock.getsockname()[:2]
        control = socket.socket(family)
        control.setblocking(False)
        control.connect_ex(address)
        assert _handshake_done(control, 5.0)  # before the stop: at once
        sock.accept()[0].close()
        queued = socket.create_connection(address)  # queued when the stop begins
        listener.refuse_new()
        queued.sendall(b"still served")
        conn, _ = sock.accept()
        with conn:
            assert conn.recv(64) == b"still served"
        # The queue is empty again: a shrunk backlog would take the next one in.
        late = socket.socket(family)
        late.setblocking(False)
        late.connect_ex(address)
        assert not _handshake_done(late, 0.5)  # its SYN is dropped: no handshake
        for client in (control, queued, late):
            client.close()


def test_an_inherited_listener_keeps_taking_connections_at_a_stop():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        Listener(sock, "fd://3", inherited=True).refuse_new()
        with socket.socket() as client:
            client.setblocking(False)
            client.connect_ex(sock.getsockname())
            assert _handshake_done(client, 5.0)


def test_a_worker_watching_its_listeners_again_while_it_watches_them_goes_on():
    # Two reasons to watch the listeners again can meet in one pass of a worker's loop
    # (an accept pause ending while the threads model's pool frees up): the second is
    # a no-op, not an error that ends the worker.
    from scgikit.connection.poller import Poller

    poller = Poller()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        poller.add_listeners([listener])
        poller.add_listeners([listener])
        with socket.create_connection(listener.getsockname(), timeout=5):
            assert poller.wait(5) == [listener.fileno()]
