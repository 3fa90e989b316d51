"""The development HTTP gateway: HTTP/1.1 in (parsed by h11), SCGI out, answers relayed."""

import hashlib
import http.client
import json
import socket
import sys

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


def exchange_raw(host, port, data):
    """Send ``data`` as is, then read the whole answer until the gateway closes."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    return answer


def error_answer_parts(answer):
    """The status line, the headers (lower-case names) and the body of a gateway's error."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status_line, {name.lower(): value for name, value in headers.items()}, body


def assert_one_line_plain_text(status_line, headers, body):
    code, reason = status_line.split(" ", 2)[1:]
    assert headers["content-type"].startswith("text/plain")
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert body.startswith(f"{code} {reason}: ".encode()) and body.endswith(b"\n")
    assert body.count(b"\n") == 1 and b"Traceback" not in body


GARBAGE = [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"\x00\xff\xfe\x16\x03\x01 not even text\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nSECRET-LOOKING LINE\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=["words", "binary", "header", "target"])
def test_garbage_gets_400_bad_request_with_one_plain_line_then_the_next_client_is_served(
        gateway, garbage):
    _, host, port = gateway
    status_line, headers, body = error_answer_parts(exchange_raw(host, port, garbage))
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert_one_line_plain_text(status_line, headers, body)
    assert b"NOT HTTP" not in body and b"SECRET" not in body and b"\x00" not in body
    status, _, answer = fetch(gateway, "GET", "/status/200")
    assert status == 200 and answer == b"status body\n"


def test_a_head_over_16_kib_gets_431_with_its_reason_phrase(gateway):
    _, host, port = gateway
    answer = exchange_raw(host, port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000)
    status_line, headers, body = error_answer_parts(answer)
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"
    assert_one_line_plain_text(status_line, headers, body)
    assert b"16384 bytes" in body


def test_an_unknown_transfer_coding_gets_501_with_its_reason_phrase(gateway):
    _, host, port = gateway
    answer = exchange_raw(host, port, b"POST / HTTP/1.1\r\nHost: x\r\n"
                                      b"Transfer-Encoding: gzip\r\n\r\n")
    status_line, headers, body = error_answer_parts(answer)
    assert status_line == "HTTP/1.1 501 Not Implemented"
    assert_one_line_plain_text(status_line, headers, body)


def test_backend_down_gives_502_bad_gateway_saying_so_in_one_line(tmp_path):
    from servers import free_port
    port = free_port()
    proc = ServerProcess([
        sys.executable, "-m", "scgikit", "gateway", "--listen", f"127.0.0.1:{port}",
        "--to", f"unix:{tmp_path}/nobody.sock"]).start(ready=r"HTTP gateway")
    try:
        answers = [exchange_raw("127.0.0.1", port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                   for _ in range(2)]  # and the gateway goes on serving
    finally:
        proc.stop()
    for answer in answers:
        status_line, headers, body = error_answer_parts(answer)
        assert status_line == "HTTP/1.1 502 Bad Gateway"
        assert_one_line_plain_text(status_line, headers, body)
        assert body == b"502 Bad Gateway: the SCGI server cannot be reached\n"
    assert "nobody.sock" in proc.log  # the log says which server, the client is not told


@pytest.mark.parametrize(("answer", "status_line", "said"), [
    (None, "HTTP/1.1 504 Gateway Timeout", b"the SCGI server did not answer in time"),
    (b"garbage without a colon\r\n\r\n", "HTTP/1.1 502 Bad Gateway",
     b"the SCGI server's answer is not a CGI response"),
], ids=["silent", "garbled"])
def test_a_silent_or_garbled_scgi_server_gets_its_status_in_one_plain_line(
        answer, status_line, said):
    from rogue import RogueServer
    from servers import free_port
    port = free_port()
    with RogueServer(answer) as rogue:
        proc = ServerProcess([
            sys.executable, "-m", "scgikit", "gateway", "--listen", f"127.0.0.1:{port}",
            "--to", rogue.address, "--timeout", "0.5"]).start(ready=r"HTTP gateway")
        try:
            raw = exchange_raw("127.0.0.1", port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            proc.stop()
    line, headers, body = error_answer_parts(raw)
    assert line == status_line
    assert_one_line_plain_text(line, headers, body)
    assert body.endswith(b": " + said + b"\n")


def test_the_gateway_listens_on_tcp_only_and_says_so_in_one_line(tmp_path):
    import subprocess
    result = subprocess.run([sys.executable, "-m", "scgikit", "gateway", "--listen",
                             f"unix:{tmp_path}/http.sock"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr == (
        f"scgikit gateway: the gateway listens on HOST:PORT, not unix:{tmp_path}/http.sock\n")


def test_gateway_help_says_it_is_for_development():
    import subprocess
    result = subprocess.run([sys.executable, "-m", "scgikit", "gateway", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert "DEVELOPMENT" in result.stdout and "examples:" in result.stdout
