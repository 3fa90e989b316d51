"""The development HTTP gateway: HTTP/1.1 in (parsed by h11), SCGI out, answers relayed."""

import hashlib
import http.client
import json
import socket

import pytest
from servers import ServerProcess

from scgikit.variables import http_variables

pytest.importorskip("h11", reason="the gateway needs h11 (pip install 'scgikit[http]')")

APP = "tests/fixtureapps/client_apps.py:app"


@pytest.fixture(scope="module")
def gateway():
    """`scgikit serve --http`: a server with its own gateway in front."""
    proc = ServerProcess.scgikit(APP, "--workers", "2", "--http", "127.0.0.1:0").start()
    match = proc.wait_for_log(r"HTTP gateway \(development only\) at: http://([\d.]+):(\d+)")[0]
    host, port = match.groups()
    yield proc, host, int(port)
    proc.stop()


def fetch(gateway, method, path, body=None, headers=None, chunked=False):
    _, host, port = gateway
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def test_get_reaches_the_app_with_the_variables_nginx_would_send(gateway):
    status, _, body = fetch(gateway, "GET", "/env/a%20b?x=1", headers={"X-Test": "yes"})
    assert status == 200
    env = json.loads(body)
    port = gateway[2]
    expected = http_variables("GET", "/env/a%20b?x=1", [
        ("Host", f"127.0.0.1:{port}"), ("Accept-Encoding", "identity"), ("X-Test", "yes")],
        server_port=port, remote_addr="127.0.0.1", remote_port=int(env["REMOTE_PORT"]))
    for name, value in expected.items():
        assert env[name] == value, name
    assert env["PATH_INFO"] == "/env/a b"


def test_post_with_content_length_arrives_whole(gateway):
    data = bytes(range(256)) * 4096
    status, _, body = fetch(gateway, "POST", "/hash", body=data,
                           headers={"Content-Type": "application/octet-stream"})
    answer = json.loads(body)
    assert status == 200 and answer["size"] == len(data)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert answer["content_type"] == "application/octet-stream"


def test_chunked_upload_is_spooled_and_sent_with_its_length(gateway):
    data = [b"a" * 1000, b"b" * 70000, b"c"]
    status, _, body = fetch(gateway, "POST", "/hash", body=iter(data),
                           headers={"Transfer-Encoding": "chunked"}, chunked=True)
    answer = json.loads(body)
    assert status == 200 and answer["size"] == 71001
    assert answer["sha256"] == hashlib.sha256(b"".join(data)).hexdigest()


def test_streamed_answer_and_repeated_headers_are_relayed(gateway):
    status, _, body = fetch(gateway, "GET", "/stream?3")
    assert status == 200 and body == b"z" * (3 << 20)
    status, headers, _ = fetch(gateway, "GET", "/cookies")
    assert status == 302
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]


def test_head_and_statuses_without_a_body(gateway):
    status, headers, body = fetch(gateway, "HEAD", "/status/200")
    assert status == 200 and body == b""
    status, _, body = fetch(gateway, "GET", "/status/204")
    assert status == 204 and body == b""


def test_keep_alive_serves_several_requests_on_one_connection(gateway):
    _, host, port = gateway
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        seen = set()
        for i in range(3):
            conn.request("GET", f"/env?n={i}")
            response = conn.getresponse()
            env = json.loads(response.read())
            assert env["QUERY_STRING"] == f"n={i}"
            seen.add(env["REMOTE_PORT"])
        assert len(seen) == 1, "the three requests did not share one connection"
    finally:
        conn.close()


def test_malformed_http_gets_400(gateway):
    _, host, port = gateway
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_backend_down_gives_502(tmp_path):
    from servers import free_port
    port = free_port()
    proc = ServerProcess([
        "python3", "-m", "scgikit", "gateway", "--listen", f"127.0.0.1:{port}",
        "--to", f"unix:{tmp_path}/nobody.sock"]).start(ready=r"HTTP gateway")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 502
        assert b"Traceback" not in response.read()
    finally:
        proc.stop()
    assert "nobody.sock" in proc.log


def test_gateway_help_says_it_is_for_development():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "scgikit", "gateway", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert "DEVELOPMENT" in result.stdout and "examples:" in result.stdout
