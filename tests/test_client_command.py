"""`scgikit request` and `scgi-test` as a user runs them: real processes, real servers."""

import hashlib
import json
import subprocess
import sys

import pytest
from rogue import RogueServer
from servers import ServerProcess, child_env

APP = "tests/fixtureapps/client_apps.py:app"


@pytest.fixture(scope="module")
def server():
    proc = ServerProcess.scgikit(APP, "--workers", "2").start()
    yield proc.address
    proc.stop()


def scgikit_request(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "scgikit", "request", *args], input=stdin,
                          capture_output=True, env=child_env(), timeout=60)


def scgi_test(*args):
    code = "import sys; from scgikit.cli import scgi_test_main; sys.exit(scgi_test_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          env=child_env(), timeout=60)


def test_body_goes_to_stdout_as_raw_bytes(server):
    result = scgikit_request(server, "/status/200")
    assert result.returncode == 0
    assert result.stdout == b"status body\n"


def test_include_writes_the_head_before_the_body(server):
    result = scgikit_request(server, "/status/404", "-i")
    assert result.returncode == 0
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 404 Whatever\r\n")
    assert b"Content-Type: text/plain" in head and body == b"status body\n"


def test_head_option_sends_head_and_writes_only_the_head(server):
    result = scgikit_request(server, "/hash", "-I")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK") and body == b""


def test_data_posts_a_form_like_curl(server):
    result = scgikit_request(server, "/hash", "-d", "a=1", "-d", "b=2")
    answer = json.loads(result.stdout)
    assert answer["method"] == "POST"
    assert answer["content_type"] == "application/x-www-form-urlencoded"
    assert answer["sha256"] == hashlib.sha256(b"a=1&b=2").hexdigest()


def test_data_from_a_file_and_from_stdin_is_sent_as_is(server, tmp_path):
    data = bytes(range(256)) * 100 + b"\n\n"
    (tmp_path / "body.bin").write_bytes(data)
    from_file = scgikit_request(server, "/hash", "-X", "PUT", "-d", f"@{tmp_path}/body.bin",
                                "-H", "Content-Type: application/octet-stream")
    from_stdin = scgikit_request(server, "/hash", "-X", "PUT", "-d", "@-", stdin=data)
    for result in (from_file, from_stdin):
        answer = json.loads(result.stdout)
        assert answer["method"] == "PUT"
        assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(from_file.stdout)["content_type"] == "application/octet-stream"


def test_headers_and_raw_variables_reach_the_app(server):
    result = scgikit_request(server, "/env", "-H", "X-One: 1", "-H", "Cookie: a=1",
                             "-H", "Cookie: b=2", "-e", "HTTPS=on", "-e", "REMOTE_ADDR=10.0.0.9")
    env = json.loads(result.stdout)
    assert env["HTTP_X_ONE"] == "1" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTPS"] == "on" and env["REMOTE_ADDR"] == "10.0.0.9"


def test_verbose_shows_variables_sent_and_the_response_head(server):
    result = scgikit_request(server, "/env?x=1", "-v")
    err = result.stderr.decode()
    assert "> REQUEST_URI=/env?x=1" in err and "> SCGI=1" in err
    assert "< Status: 200 OK" in err
    assert json.loads(result.stdout)["QUERY_STRING"] == "x=1"


def test_output_writes_the_body_to_a_file(server, tmp_path):
    target = tmp_path / "out.bin"
    result = scgikit_request(server, "/stream?2", "-o", str(target))
    assert result.returncode == 0 and result.stdout == b""
    assert target.read_bytes() == b"z" * (2 << 20)


def test_fail_exits_22_without_writing_the_body(server):
    result = scgikit_request(server, "/status/503", "-f")
    assert result.returncode == 22
    assert result.stdout == b""
    assert b"503" in result.stderr


def test_timing_summary_on_stderr(server):
    result = scgikit_request(server, "/status/200", "-w")
    assert result.returncode == 0
    assert b"connect:" in result.stderr and b"first byte:" in result.stderr
    assert b"total:" in result.stderr


def test_address_defaults_to_localhost_4000():
    result = scgikit_request("--help")
    assert b"localhost:4000" in result.stdout
    assert b"examples:" in result.stdout


def test_connection_refused_exits_7_with_one_line(tmp_path):
    result = scgikit_request(f"unix:{tmp_path}/none.sock", "/")
    assert result.returncode == 7
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr


def test_timeout_exits_28():
    with RogueServer(None) as rogue:
        result = scgikit_request(rogue.address, "/", "-m", "0.3")
    assert result.returncode == 28 and b"Traceback" not in result.stderr


def test_malformed_answer_exits_8():
    with RogueServer(b"garbage without a colon\r\n\r\n") as rogue:
        result = scgikit_request(rogue.address, "/")
    assert result.returncode == 8 and b"malformed" in result.stderr


def test_empty_answer_exits_52():
    with RogueServer(b"") as rogue:
        result = scgikit_request(rogue.address, "/")
    assert result.returncode == 52


def test_unreadable_data_file_exits_26(server, tmp_path):
    result = scgikit_request(server, "/hash", "-d", f"@{tmp_path}/missing")
    assert result.returncode == 26 and b"cannot read" in result.stderr


def test_relative_uri_is_a_usage_error():
    result = scgikit_request("localhost:4000", "no-slash")
    assert result.returncode == 2
    assert result.stderr == b"scgikit request: URI 'no-slash': expected a path starting with '/'\n"


def test_scgi_test_prints_the_answer_exactly_as_sent():
    raw = b"Status: 200 OK\r\nX-Odd:   spaced  \r\nContent-Type: text/plain\r\n\r\nbody\x00bytes"
    with RogueServer(raw) as rogue:
        port = rogue.address.rsplit(":", 1)[1]
        result = scgi_test("--host", "127.0.0.1", "--port", port, "/your/uri/")
    assert result.returncode == 0
    assert result.stdout == raw
    environ, _ = rogue.requests[0]
    assert environ["REQUEST_URI"] == "/your/uri/" and environ["REQUEST_METHOD"] == "GET"


HTTP_SERVER_400 = (b"HTTP/1.0 400 Bad request syntax\r\nServer: BaseHTTP/0.6\r\n"
                   b"Connection: close\r\nContent-Type: text/html\r\n\r\n<p>400</p>")


def test_an_http_servers_refusal_exits_8_saying_what_the_server_is():
    with RogueServer(HTTP_SERVER_400) as rogue:
        result = scgikit_request(rogue.address, "/")
    assert result.returncode == 8 and result.stdout == b""
    assert result.stderr.decode() == (
        f"scgikit request: {rogue.address} is an HTTP server, not an SCGI one: it answered "
        "'HTTP/1.0 400 Bad request syntax' (Server: BaseHTTP/0.6), as HTTP servers answer "
        "bytes they cannot parse; give the SCGI backend's address instead (the one in the "
        "front end's scgi_pass), or use an HTTP client such as curl\n")


def test_scgi_test_prints_an_http_servers_refusal_as_sent_then_exits_8():
    with RogueServer(HTTP_SERVER_400) as rogue:
        port = rogue.address.rsplit(":", 1)[1]
        result = scgi_test("--host", "127.0.0.1", "--port", port, "/")
    assert result.returncode == 8
    assert result.stdout == HTTP_SERVER_400
    assert result.stderr.startswith(b"scgi-test: 127.0.0.1:")
    assert b"is an HTTP server, not an SCGI one" in result.stderr


def test_scgi_test_over_a_unix_socket(tmp_path):
    proc = ServerProcess.scgikit(APP, "--workers", "1", bind=(f"unix:{tmp_path}/s.sock",)).start()
    try:
        result = scgi_test("--unix", f"{tmp_path}/s.sock", "/status/201")
    finally:
        proc.stop()
    assert result.stdout.startswith(b"Status: 201 Whatever\r\n")
    assert result.stdout.endswith(b"\r\n\r\nstatus body\n")


def test_scgi_test_help_shows_examples_and_refused_exits_7(tmp_path):
    assert b"examples:" in scgi_test("--help").stdout
    assert scgi_test("--unix", f"{tmp_path}/none", "/").returncode == 7
