"""Handler factories, served: any callable that takes ``parent_fd`` and returns a handler, as
the original package's SCGIServer took for ``handler_class`` (Quixote 3.8 passes a
``create_handler`` closure).  Each worker makes one handler with it, whether the factory
comes to ``SCGIServer``, to ``scgikit serve --interface handler``, or marked with
``@handler_factory``; over TCP and unix sockets; and the socket systemd passes is served
by ``SCGIServer.serve()`` as by the original's."""

from __future__ import annotations

import signal
import socket
import sys

import pytest
from scgi_raw import exchange_raw, parse_answer, request
from servers import FIXTURES, ServerProcess, child_env, failed_start, wait_until, worker_pids

pytestmark = pytest.mark.timeout(60)


def script(tmp_path, source: str, *args: str) -> ServerProcess:
    path = tmp_path / "script.py"
    path.write_text(source)
    return ServerProcess([sys.executable, str(path), *args], env=child_env())


def test_scgiserver_serves_a_closure_with_max_children_given_as_a_string():
    server = ServerProcess([sys.executable, str(FIXTURES / "handler_factories.py"), "0", "2"],
                           env=child_env()).start()
    try:
        server.wait_for_log("starting 2 workers")
        answer = request(server.address, "/quixote/", method="POST", body=b"form")
        assert answer.status == 200
        assert answer.body == b"closure /quixote/ parent_fd=None served=1 body=form"
        # HUP: new workers, each with a new handler from the factory, then the old ones go.
        old = worker_pids(server.pid)
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload: generation 1 ready; stopping \d+ old workers")
        wait_until(lambda: len(worker_pids(server.pid) - old) == 2
                   and not worker_pids(server.pid) & old, message="the old workers to go")
        assert request(server.address, "/again").body == (
            b"closure /again parent_fd=None served=1 body=")
    finally:
        assert server.stop() == 0


UNIX_SCRIPT = """
import socket, sys
import scgikit.scgi_server
from handler_factories import marked

class UnixServer(scgikit.scgi_server.SCGIServer):
    def get_listening_socket(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sys.argv[1])
        return sock

UnixServer(marked, max_children=1).serve()
"""


def test_scgiserver_serves_on_the_socket_an_overridden_get_listening_socket_returns(tmp_path):
    path = tmp_path / "app.sock"
    server = script(tmp_path, UNIX_SCRIPT, str(path)).start()
    try:
        server.wait_for_log(rf"Listening at: fd://\d+ \(unix:{path}\)")
        for count in (1, 2):  # one handler per worker, made once
            answer = request(f"unix:{path}", "/u")
            assert answer.body == f"marked /u parent_fd=None served={count} body=".encode()
    finally:
        assert server.stop() == 0


@pytest.fixture
def factory(serve, transport):
    def start(target, *args):
        server = serve(f"handler_factories:{target}", "--workers", "1", *args, bind=[transport])
        return server.address

    return start


def test_serve_interface_handler_serves_an_unmarked_factory(factory):
    address = factory("create_handler", "--interface", "handler")
    assert request(address, "/a").body == b"made /a parent_fd=None served=1 body="
    assert request(address, "/b").body == b"made /b parent_fd=None served=2 body="


def test_a_factory_marked_handler_factory_is_served_as_a_handler_without_interface(factory):
    address = factory("marked")
    assert request(address, "/m", method="PUT", body=b"x").body == (
        b"marked /m parent_fd=None served=1 body=x")


def test_a_factory_handler_that_takes_the_connection_gets_it(factory):
    assert request(factory("marked_raw"), "/raw").body == b"raw /raw"


def test_interface_handler_in_the_environment_serves_the_factory(serve):
    server = serve("handler_factories:create_handler",
                   env=child_env(SCGIKIT_INTERFACE="handler", SCGIKIT_WORKERS="1"))
    assert request(server.address, "/e").body == b"made /e parent_fd=None served=1 body="


def test_a_quixote_style_handler_of_the_original_package_is_served(tmp_path):
    pytest.importorskip("scgi.scgi_server", reason="the scgi package (PyPI scgi==2.2) is not "
                        "installed: run scripts/install-test-deps")
    server = ServerProcess([sys.executable, str(FIXTURES / "quixote_style.py"), "0"],
                           env=child_env()).start()
    try:
        server.wait_for_log("starting 2 workers")
        # mod_scgi (Apache) sends the whole path as SCRIPT_NAME; the handler splits it.
        answer = request(server.address, "/app/page", method="POST", body=b"q=1",
                         env={"SCRIPT_NAME": "/app/page"})
        assert answer.status == 200
        assert answer.body == b"script=/app path=/page body=q=1"
    finally:
        assert server.stop() == 0


def test_a_handler_class_of_the_original_package_is_served_with_interface_handler(serve,
                                                                                  transport):
    pytest.importorskip("scgi.scgi_server", reason="the scgi package (PyPI scgi==2.2) is not "
                        "installed: run scripts/install-test-deps")
    server = serve("quixote_style:OriginalProduce", "--interface", "handler", "--workers", "1",
                   bind=[transport])
    assert request(server.address, "/", method="POST", body=b"body").body == b"original body"


def test_a_factory_that_makes_no_handler_stops_the_server_with_the_reason():
    server = failed_start("handler_factories:returns_nothing")
    assert server.proc.returncode == 4
    server.wait_for_log(r"Cannot load the app: .*returned None, which has neither produce\(\) "
                        r"nor handle_connection\(\)")


# A launcher as systemd starts a socket-activated service: the listening socket at fd 3,
# LISTEN_FDS, and LISTEN_PID naming the process, which then runs the script.
SYSTEMD_SCRIPT = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = sys.argv[2] if len(sys.argv) > 2 else str(os.getpid())
import scgikit.scgi_server
from handler_factories import marked
scgikit.scgi_server.SCGIServer(marked, port=0, max_children=1).serve()
"""


def test_scgiserver_serve_takes_the_socket_systemd_passes(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        server = script(tmp_path, SYSTEMD_SCRIPT, str(sock.fileno()))
        server.start(ready=r"Listening at: systemd fd 3 \(127\.0\.0\.1:", pass_fds=[sock.fileno()])
        try:
            host, port = sock.getsockname()
            assert request(f"{host}:{port}", "/sd").body == (
                b"marked /sd parent_fd=None served=1 body=")
            assert len(server.wait_for_log("Listening at: ")) == 1
        finally:
            assert server.stop() == 0


TWO_SOCKETS_SCRIPT = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.dup2(int(sys.argv[2]), 4)
os.environ.update(LISTEN_FDS="2", LISTEN_PID=str(os.getpid()))
import scgikit.scgi_server
from handler_factories import marked
scgikit.scgi_server.SCGIServer(marked, max_children=1).serve()
"""


def test_scgiserver_serves_every_socket_systemd_passes(tmp_path):
    # The original's serve() refused more than one (OSError).
    with socket.create_server(("127.0.0.1", 0)) as one, \
            socket.create_server(("127.0.0.1", 0)) as two:
        fds = [one.fileno(), two.fileno()]
        server = script(tmp_path, TWO_SOCKETS_SCRIPT, *map(str, fds))
        server.start(ready=r"Listening at: systemd fd 4", pass_fds=fds)
        try:
            for sock in (one, two):
                host, port = sock.getsockname()
                assert request(f"{host}:{port}", "/two").status == 200
        finally:
            assert server.stop() == 0


def test_a_malformed_head_is_answered_400_before_a_raw_handler_sees_it(factory):
    address = factory("marked_raw")
    assert parse_answer(exchange_raw(address, b"5:abcde,")).status == 400
    assert request(address, "/after").body == b"raw /after"


def test_a_socket_systemd_passes_to_another_process_is_left_alone(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        server = script(tmp_path, SYSTEMD_SCRIPT, str(sock.fileno()), "1")
        server.start(pass_fds=[sock.fileno()])
        try:
            assert server.address.startswith("127.0.0.1:")  # host:port, bound by the master
            assert server.address != f"127.0.0.1:{sock.getsockname()[1]}"
            assert request(server.address, "/own").status == 200
        finally:
            assert server.stop() == 0


def test_python_m_scgikit_scgi_server_port_serves_the_debugging_handler():
    server = ServerProcess([sys.executable, "-m", "scgikit.scgi_server", "0"],
                           env=child_env()).start()
    try:
        answer = request(server.address, "/listed")
        assert answer.header("Content-Type") == "text/plain; charset=utf-8"
        assert b"REQUEST_URI: '/listed'" in answer.body
    finally:
        assert server.stop() == 0
