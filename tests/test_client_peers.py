"""The client against SCGI servers nobody here wrote: scgi 2.2, uWSGI and rtorrent.

Each server is the real program, installed by scripts/install-test-deps (PyPI's
scgi and uwsgi, Debian's rtorrent), started on loopback or a unix socket.
"""

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from servers import free_port, wait_until

from scgikit import client
from scgikit.xmlrpc import ServerProxy

HERE = Path(__file__).parent


def _accepting(address):
    family, where = ((socket.AF_UNIX, address[5:]) if address.startswith("unix:")
                     else (socket.AF_INET, ("127.0.0.1", int(address.rsplit(":", 1)[1]))))
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(where)
            return True
        except OSError:
            return False


def _start(argv, address, cwd=None):
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or _accepting(address), timeout=30)
    except BaseException:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: "
                           f"{proc.stderr.read().decode(errors='replace')[-2000:]}")
    return proc


def _stop(proc):
    import os
    import signal
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
    proc.stderr.close()


# --- scgi 2.2 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scgi22():
    try:
        import scgi.scgi_server  # noqa: F401
    except ImportError:
        pytest.skip("the scgi package (PyPI scgi==2.2) is not installed: "
                    "run scripts/install-test-deps")
    port = free_port()
    address = f"127.0.0.1:{port}"
    proc = _start([sys.executable, str(HERE / "fixtureapps" / "scgi22_server.py"), str(port)],
                  address)
    yield address
    _stop(proc)


def test_scgi22_receives_nginx_variables_and_answers(scgi22):
    answer = client.request(scgi22, "/path?q=1", headers=[("X-Test", "yes")])
    assert answer.status == 200
    assert answer.header_list("Set-Cookie") == ["a=1", "b=2"]
    env = json.loads(answer.body)["env"]
    assert env["REQUEST_URI"] == "/path?q=1" and env["HTTP_X_TEST"] == "yes"
    assert env["SCGI"] == "1" and env["CONTENT_LENGTH"] == "0"


def test_scgi22_upload_and_download(scgi22):
    data = b"0128 * 1024789abcdef" * (1 << 16)  # 1 MiB
    answer = json.loads(client.request(scgi22, "/up", "POST", body=data).body)
    assert answer["size"] == len(data)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    with client.stream(scgi22, "/stream?5") as streamed:
        assert sum(len(chunk) for chunk in streamed.iter_body()) == 5 << 20


def test_scgi22_async(scgi22):
    import asyncio
    answer = asyncio.run(client.arequest(scgi22, "/async", "POST", body=b"x" * 1000))
    assert json.loads(answer.body)["size"] == 1000


# --- uWSGI ---------------------------------------------------------------------------------

def _uwsgi_binary():
    found = shutil.which("uwsgi") or str(Path(sys.executable).with_name("uwsgi"))
    if not Path(found).exists():
        pytest.skip("uWSGI (PyPI uwsgi) is not installed: run scripts/install-test-deps")
    return found


@pytest.fixture(scope="module", params=["tcp", "unix"])
def uwsgi(request, tmp_path_factory):
    binary = _uwsgi_binary()
    if request.param == "tcp":
        address = f"127.0.0.1:{free_port()}"
        socket_arg = address
    else:
        socket_arg = str(tmp_path_factory.mktemp("uwsgi") / "app.sock")
        address = f"unix:{socket_arg}"
    proc = _start([binary, "--scgi-socket", socket_arg, "--wsgi-file",
                   str(HERE / "fixtureapps" / "client_apps.py"), "--callable", "app",
                   "--master", "--processes", "1", "--die-on-term", "--disable-logging",
                   "--buffer-size", "32768"], address)
    yield address
    _stop(proc)


def test_uwsgi_receives_nginx_variables(uwsgi):
    env = json.loads(client.request(uwsgi, "/env?x=%2F", headers=[("Cookie", "a=1"),
                                                                 ("Cookie", "b=2")]).body)
    assert env["QUERY_STRING"] == "x=%2F"
    assert env["DOCUMENT_URI"] == "/env"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_uwsgi_post_and_streamed_download(uwsgi):
    data = bytes(range(256)) * 4096  # 1 MiB
    answer = json.loads(client.request(uwsgi, "/hash", "POST", body=data).body)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    with client.stream(uwsgi, "/stream?20") as streamed:
        assert streamed.status == 200
        assert sum(len(chunk) for chunk in streamed.iter_body()) == 20 << 20


def test_uwsgi_statuses_and_repeated_headers(uwsgi):
    answer = client.request(uwsgi, "/cookies")
    assert answer.status == 302
    assert answer.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert client.request(uwsgi, "/status/404").status == 404


# --- rtorrent --------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["tcp", "unix"])
def rtorrent(request, tmp_path_factory):
    binary = shutil.which("rtorrent")
    if binary is None:
        pytest.skip("rtorrent (Debian package rtorrent) is not installed: "
                    "run scripts/install-test-deps")
    home = tmp_path_factory.mktemp("rtorrent")
    (home / "session").mkdir()
    if request.param == "tcp":
        address = f"127.0.0.1:{free_port()}"
        scgi = f"network.scgi.open_port={address}"
    else:
        address = f"unix:{home}/rpc.sock"
        scgi = f"network.scgi.open_local={home}/rpc.sock"
    proc = _start([binary, "-n", "-o", "system.daemon.set=true", "-o", scgi,
                   "-o", f"session.path.set={home}/session", "-o", f"directory.default.set={home}",
                   "-o", "network.port_range.set=6890-6999", "-o", "dht.mode.set=disable",
                   "-o", "trackers.use_udp.set=no"], address, cwd=home)
    yield address
    _stop(proc)


def test_rtorrent_answers_xmlrpc_over_scgi(rtorrent):
    proxy = ServerProxy(rtorrent)
    assert proxy.system.client_version().count(".") >= 2
    methods = proxy.system.listMethods()
    assert "d.name" in methods and len(methods) > 100


def test_rtorrent_reads_and_sets_a_value(rtorrent):
    proxy = ServerProxy(rtorrent)
    proxy.throttle.global_down.max_rate.set("", 128 * 1024)
    assert proxy.throttle.global_down.max_rate() == 128 * 1024
    assert proxy.download_list() == []


def test_rtorrent_fault_is_an_xmlrpc_fault(rtorrent):
    with pytest.raises(xmlrpc.client.Fault):
        ServerProxy(rtorrent).no.such.method()
