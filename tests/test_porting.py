"""What docs/porting.md says of flup and uWSGI, side by side: the same WSGI app
(fixtureapps/porting_apps.py) served by flup's prefork SCGI server, by uWSGI's
``--scgi-socket`` and by ``scgikit serve``, and the same requests, with the variables nginx
sends (or Apache's mod_scgi, where it says so), sent to each."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from scgi_raw import request
from servers import FIXTURES, ServerProcess, child_env, free_port, wait_until

pytestmark = pytest.mark.timeout(90)


def accepting(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


class Peer:
    """A server nobody here wrote, started in a session of its own, stopped with it."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.address = f"127.0.0.1:{free_port()}"  # neither can tell us the port it bound
        argv = [arg.replace("ADDRESS", self.address) for arg in argv]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or accepting(self.address),
                   timeout=30, message=f"{argv[0]} to listen")
        assert self.proc.poll() is None, f"{argv} exited with {self.proc.returncode}"

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)


@pytest.fixture(scope="module")
def flup():
    pytest.importorskip("flup.server.scgi_fork", reason="flup is not installed: run "
                        "scripts/install-test-deps")
    peer = Peer([sys.executable, str(FIXTURES / "flup_server.py"), "ADDRESS"])
    yield peer.address
    peer.stop()


@pytest.fixture(scope="module")
def uwsgi():
    binary = Path(sys.executable).with_name("uwsgi")
    if not binary.exists():
        pytest.skip("uWSGI (PyPI uwsgi) is not installed: run scripts/install-test-deps")
    peer = Peer([str(binary), "--scgi-socket", "ADDRESS", "--wsgi-file",
                 str(FIXTURES / "porting_apps.py"), "--callable", "environ", "--master",
                 "--processes", "1", "--die-on-term", "--disable-logging"])
    yield peer.address
    peer.stop()


@pytest.fixture(scope="module")
def scgikit():
    server = ServerProcess.scgikit("porting_apps:environ", "--workers", "1").start()
    yield server.address
    server.stop()


def seen(address: str, uri: str, **kwargs) -> dict[str, object]:
    answer = request(address, uri, **kwargs)
    assert answer.status == 200, answer.body[:300]
    return json.loads(answer.body)


SAME = ("QUERY_STRING", "REQUEST_METHOD", "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT",
        "SERVER_PROTOCOL", "HTTP_COOKIE", "REMOTE_ADDR", "wsgi.url_scheme", "wsgi.multithread",
        "wsgi.run_once", "body")


def test_the_three_give_the_app_the_same_request(flup, uwsgi, scgikit):
    for kwargs in ({}, {"method": "POST", "body": b"a=1"},
                   {"env": {"HTTPS": "on", "HTTP_COOKIE": "a=1; b=2"}}):
        got = [seen(address, "/page?x=1&y=%2F", **kwargs) for address in (flup, uwsgi, scgikit)]
        assert [{key: one[key] for key in SAME} for one in got[:2]] == [
            {key: got[2][key] for key in SAME}] * 2


def test_path_info_from_request_uri_is_percent_decoded_by_scgikit_only(flup, uwsgi, scgikit):
    # nginx's scgi_params send no PATH_INFO: flup takes REQUEST_URI's path as it is, uWSGI
    # passes none on, scgikit decodes it as PEP 3333 has it.
    paths = [(one["SCRIPT_NAME"], one["PATH_INFO"])
             for one in (seen(address, "/a%20b/c?q") for address in (flup, uwsgi, scgikit))]
    assert paths == [("", "/a%20b/c"), (None, None), ("", "/a b/c")]
    # uWSGI passes one on when nginx sends it: scgi_param PATH_INFO $document_uri;
    assert seen(uwsgi, "/a%20b/c?q", env={"PATH_INFO": "/a b/c"})["PATH_INFO"] == "/a b/c"


def test_apaches_whole_path_in_script_name_is_made_path_info_by_scgikit_only(
        flup, uwsgi, scgikit):
    paths = [(one["SCRIPT_NAME"], one["PATH_INFO"]) for one in (
        seen(address, "/app/page", env={"SCRIPT_NAME": "/app/page"})
        for address in (flup, uwsgi, scgikit))]
    assert paths == [("/app/page", ""), ("/app/page", None), ("", "/app/page")]


def test_wsgi_multiprocess_is_true_on_scgikit_whatever_the_number_of_workers(
        flup, uwsgi, scgikit):
    assert [seen(address, "/")["wsgi.multiprocess"] for address in (flup, uwsgi, scgikit)] == [
        True, False, True]


def test_flups_script_name_is_scgikits_script_name_option_which_needs_no_script_name_sent():
    pytest.importorskip("flup.server.scgi_fork", reason="flup is not installed")
    peer = Peer([sys.executable, str(FIXTURES / "flup_server.py"), "ADDRESS", "/app"])
    server = ServerProcess.scgikit("porting_apps:environ", "--workers", "1",
                                   "--script-name", "/app").start()
    try:
        apache = {"SCRIPT_NAME": "/app/page"}  # mod_scgi: the whole path as SCRIPT_NAME
        got = [seen(address, "/app/page?q", env=apache)
               for address in (peer.address, server.address)]
        assert [(one["SCRIPT_NAME"], one["PATH_INFO"]) for one in got] == [("/app", "/page")] * 2
        # With nginx's variables (no SCRIPT_NAME) flup's scriptName fails the request.
        assert request(peer.address, "/app/page").status == 500
        one = seen(server.address, "/app/page")
        assert (one["SCRIPT_NAME"], one["PATH_INFO"]) == ("/app", "/page")
    finally:
        peer.stop()
        server.stop()


# A flup script, ported: WSGIServer(app, bindAddress=...).run() becomes scgikit's command
# line, called from Python; the exit status is what main() returns.
PORTED = """
import sys
from scgikit.cli import main

sys.exit(main(["serve", "porting_apps:environ", "--bind", sys.argv[1], "--workers", "1"]))
"""


def test_a_flup_script_ported_to_scgikit_cli_main_serves(tmp_path, transport):
    script = tmp_path / "ported.py"
    script.write_text(PORTED)
    server = ServerProcess([sys.executable, str(script), transport], env=child_env()).start()
    try:
        assert seen(server.address, "/p?q=1")["PATH_INFO"] == "/p"
    finally:
        assert server.stop() == 0
