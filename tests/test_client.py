"""scgikit.client against scgikit's own server, and against servers that misbehave."""

import asyncio
import hashlib
import io
import json
import tracemalloc

import pytest
from rogue import RogueServer
from servers import ServerProcess

from scgikit import client
from scgikit.protocol import ProtocolError

APP = "tests/fixtureapps/client_apps.py:app"


@pytest.fixture(scope="module", params=["tcp", "unix"])
def server(request, tmp_path_factory):
    bind = ("127.0.0.1:0" if request.param == "tcp"
            else f"unix:{tmp_path_factory.mktemp('sock')}/app.sock")
    proc = ServerProcess.scgikit(APP, "--workers", "2", bind=(bind,)).start()
    yield proc.address
    proc.stop()


def test_get_returns_status_reason_headers_and_body(server):
    answer = client.request(server, "/status/418")
    assert (answer.status, answer.reason) == (418, "Whatever")
    assert answer.header("content-type") == "text/plain"
    assert answer.body == b"status body\n"


def test_variables_are_those_nginx_sends_with_scgi_params(server):
    env = json.loads(client.request(server, "/env?a=1&b=%20").body)
    for name in ("REQUEST_METHOD", "REQUEST_URI", "DOCUMENT_URI", "QUERY_STRING", "CONTENT_TYPE",
                 "CONTENT_LENGTH", "SERVER_PROTOCOL", "REQUEST_SCHEME", "SERVER_NAME",
                 "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "SCGI"):
        assert name in env, name
    assert env["REQUEST_URI"] == "/env?a=1&b=%20"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["DOCUMENT_URI"] == "/env"
    assert env["CONTENT_LENGTH"] == "0"
    assert env["SCGI"] == "1"
    assert env["HTTP_HOST"] == "localhost"


def test_headers_become_http_variables_and_repeats_are_joined_as_nginx_joins_them(server):
    headers = [("X-Trace-Id", "7"), ("Cookie", "a=1"), ("Cookie", "b=2"),
               ("Accept", "text/html"), ("Accept", "*/*"), ("Content-Type", "text/x-test")]
    env = json.loads(client.request(server, "/env", headers=headers).body)
    assert env["HTTP_X_TRACE_ID"] == "7"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_ACCEPT"] == "text/html, */*"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert "HTTP_CONTENT_TYPE" not in env


def test_env_adds_and_overrides_raw_variables(server):
    env = json.loads(client.request(server, "/env", env={"HTTPS": "on", "SERVER_NAME": "ex.org",
                                                         "X_CUSTOM": "yes"}).body)
    assert (env["HTTPS"], env["SERVER_NAME"], env["X_CUSTOM"]) == ("on", "ex.org", "yes")


def test_non_ascii_uri_is_sent_as_utf8_bytes(server):
    env = json.loads(client.request(server, "/env/caf\u00e9?q=\u00fc").body)
    assert env["REQUEST_URI"].encode("latin-1") == "/env/caf\u00e9?q=\u00fc".encode()
    assert env["PATH_INFO"].encode("latin-1") == "/env/caf\u00e9".encode()


@pytest.mark.parametrize("make_body", [
    lambda data: data,
    lambda data: io.BytesIO(data),
    lambda data: iter([data[:1000], data[1000:5000], data[5000:]]),
], ids=["bytes", "file", "iterable"])
def test_body_sources_arrive_whole_with_their_length(server, make_body):
    data = bytes(range(256)) * 400
    answer = json.loads(client.request(server, "/hash", "POST", body=make_body(data)).body)
    assert answer == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "method": "POST", "content_type": ""}


def test_iterable_body_is_consumed_once(server):
    pulled = []

    def chunks():
        for i in range(3):
            pulled.append(i)
            yield b"%d" % i * 10

    answer = json.loads(client.request(server, "/hash", "PUT", body=chunks()).body)
    assert answer["size"] == 30 and pulled == [0, 1, 2]


def test_empty_post_sends_content_length_zero(server):
    answer = json.loads(client.request(server, "/hash", "POST", body=b"").body)
    assert answer["size"] == 0


def test_50mb_upload_from_a_file_streams_in_constant_memory(server, tmp_path):
    path = tmp_path / "upload.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        for i in range(50):
            block = bytes([i]) * (1 << 20)
            digest.update(block)
            file.write(block)
    tracemalloc.start()
    try:
        with open(path, "rb") as file:
            answer = client.request(server, "/hash", "POST", body=file)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert json.loads(answer.body)["sha256"] == digest.hexdigest()
    assert peak < 4 << 20, f"client held {peak} bytes while sending 50 MB"


def test_50mb_download_streams_in_constant_memory(server):
    tracemalloc.start()
    try:
        size = 0
        with client.stream(server, "/stream?50") as answer:
            assert answer.status == 200
            for chunk in answer.iter_body():
                size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 50 << 20
    assert peak < 4 << 20, f"client held {peak} bytes while receiving 50 MB"


def test_repeated_response_headers_keep_their_order(server):
    answer = client.request(server, "/cookies")
    assert answer.status == 302
    assert answer.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert answer.header("location") == "/env"


def test_timings_are_in_order(server):
    timings = client.request(server, "/env").timings
    assert 0 < timings.connect <= timings.first_byte <= timings.total


def test_arequest_gives_the_same_answer_as_request(server):
    data = b"async body" * 1000
    sync = client.request(server, "/hash", "POST", body=data)
    result = asyncio.run(client.arequest(server, "/hash", "POST", body=data))
    assert (result.status, result.headers, result.body) == (sync.status, sync.headers, sync.body)


def test_arequest_streams_an_async_iterable_body(server):
    async def chunks():
        for _ in range(4):
            yield b"q" * 1000

    result = asyncio.run(client.arequest(server, "/hash", "POST", body=chunks(),
                                         content_length=4000))
    assert json.loads(result.body)["size"] == 4000


# --- servers that answer in other forms, or badly ------------------------------------------

@pytest.mark.parametrize(("raw", "status", "reason"), [
    (b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope", 404, "Not Found"),
    (b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\n\r\nnope", 201, "Created"),
    (b"Content-Type: text/plain\r\n\r\nnope", 200, "OK"),
    (b"Content-Type: text/plain\n\nnope", 200, "OK"),
])
def test_accepts_status_header_status_line_and_no_status(raw, status, reason):
    with RogueServer(raw) as rogue:
        answer = client.request(rogue.address, "/")
    assert (answer.status, answer.reason, answer.body) == (status, reason, b"nope")


def test_garbled_answer_is_a_malformed_response():
    with RogueServer(b"this is not a cgi head\r\n\r\nbody") as rogue:
        with pytest.raises(client.MalformedResponse, match="malformed response header") as info:
            client.request(rogue.address, "/")
    assert isinstance(info.value, ProtocolError) and not isinstance(info.value, ValueError)
    assert info.value.exit_code == 8


def test_answer_shorter_than_its_content_length_is_truncated():
    with RogueServer(b"Status: 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.") as rogue:
        with pytest.raises(client.MalformedResponse, match="truncated"):
            client.request(rogue.address, "/")


def test_head_cut_short_is_malformed():
    with RogueServer(b"Status: 200 OK\r\nContent-Ty") as rogue:
        with pytest.raises(client.MalformedResponse, match="before the response head"):
            client.request(rogue.address, "/")


# What nginx answers an SCGI request sent to its HTTP port, byte for byte.
NGINX_400 = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n"
             b"Date: Sun, 29 Nov 2026 23:40:12 GMT\r\nContent-Type: text/html\r\n"
             b"Content-Length: 15\r\nConnection: close\r\n\r\n<html>400</html>")


def test_an_http_servers_refusal_is_not_scgi():
    with RogueServer(NGINX_400) as rogue:
        with pytest.raises(client.NotSCGI) as info:
            client.request(rogue.address, "/")
    assert str(info.value).startswith(
        f"{rogue.address} is an HTTP server, not an SCGI one: it answered "
        "'HTTP/1.1 400 Bad Request' (Server: nginx/1.22.1)")
    assert isinstance(info.value, client.MalformedResponse) and info.value.exit_code == 8


def test_an_http_servers_refusal_is_not_scgi_async():
    with RogueServer(NGINX_400) as rogue:
        with pytest.raises(client.NotSCGI):
            asyncio.run(client.arequest(rogue.address, "/"))


@pytest.mark.parametrize("raw", [
    # CGI's NPH form: an SCGI backend may answer with a status line, even an error one.
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nno",
    b"HTTP/1.1 200 OK\r\nServer: app/1\r\nConnection: close\r\n\r\nno",
    b"Status: 400 Bad Request\r\nServer: app/1\r\nConnection: close\r\n\r\nno",
])
def test_an_nph_or_status_answer_from_an_scgi_backend_is_not_taken_for_an_http_server(raw):
    with RogueServer(raw) as rogue:
        answer = client.request(rogue.address, "/")
    assert answer.body == b"no"


def test_a_timeout_before_any_answer_hints_at_an_http_server():
    with RogueServer(None) as rogue:
        with pytest.raises(client.RequestTimeout, match=f"if {rogue.address} is an HTTP server "
                           "rather than an SCGI one, it is still waiting for the end of a "
                           "request line"):
            client.request(rogue.address, "/", timeout=0.3)


def test_no_answer_at_all_is_an_empty_response():
    with RogueServer(b"") as rogue:
        with pytest.raises(client.EmptyResponse) as info:
            client.request(rogue.address, "/")
    assert info.value.exit_code == 52


def test_a_stalled_server_times_out():
    with RogueServer(None) as rogue:
        with pytest.raises(client.RequestTimeout) as info:
            client.request(rogue.address, "/", timeout=0.3)
    assert info.value.exit_code == 28


def test_a_stalled_server_times_out_async():
    with RogueServer(None) as rogue:
        with pytest.raises(client.RequestTimeout):
            asyncio.run(client.arequest(rogue.address, "/", timeout=0.3))


def test_request_reaches_the_server_as_encoded_by_the_protocol_core(tmp_path):
    with RogueServer(b"Status: 204 No Content\r\n\r\n", path=str(tmp_path / "r.sock")) as rogue:
        client.request(rogue.address, "/x?y", "DELETE", body=b"payload")
    environ, body = rogue.requests[0]
    assert (environ["REQUEST_METHOD"], environ["CONTENT_LENGTH"], body) == (
        "DELETE", "7", b"payload")


def test_connection_refused_is_connect_failed(tmp_path):
    with pytest.raises(client.ConnectFailed, match="could not connect") as info:
        client.request(f"unix:{tmp_path}/nobody.sock", "/")
    assert info.value.exit_code == 7


@pytest.mark.parametrize("address", [("127.0.0.1", 4000), "[::1]:4000", "unix:/x.sock"])
def test_addresses_are_parsed_by_the_shared_parser(address):
    from scgikit.addresses import parse_address
    assert parse_address(address).sockaddr


def test_uri_must_start_with_a_slash():
    with pytest.raises(ValueError, match="must start with '/'"):
        client.request("127.0.0.1:1", "relative")


def test_body_iterable_longer_than_declared_is_refused(server):
    with pytest.raises(ValueError, match="more than content_length"):
        client.request(server, "/hash", "POST", body=iter([b"abc", b"def"]), content_length=4)
