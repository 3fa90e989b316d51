"""nginx, Apache and lighttpd from Debian's packages in front of `scgikit serve`, end to end.

Each front end runs the configuration `scgikit config` prints (tests/frontends.py
wraps it in a harness) and is driven with a real HTTP client.
"""

import hashlib
import http.client
import json
import os
import tempfile
from pathlib import Path

import pytest
from frontends import FrontEnd, available
from servers import ServerProcess, wait_until, worker_pids

APP = "tests/fixtureapps/frontend_apps.py:app"
CLASSIC = "tests/fixtureapps/frontend_apps.py:EnvDump"
NAMES = ["nginx", "apache", "lighttpd"]


def _front(name, bind, prefix="/"):
    reason = available(name)
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix=f"scgikit-{name}-"))
    return FrontEnd(name, folder, bind, prefix=prefix).start()


def _serve(target, *args, bind=("127.0.0.1:0",)):
    return ServerProcess.scgikit(target, "--workers", "2", *args, bind=bind).start()


def fetch(front, method, path, body=None, headers=(), chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if chunked:
            for piece in body:
                conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        elif body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def backend():
    server = _serve(APP)
    yield server
    server.stop()


@pytest.fixture(scope="module", params=NAMES)
def front(request, backend):
    front = _front(request.param, [backend.address])
    yield front
    front.stop()


def env_of(front, path, headers=()):
    status, _, body = fetch(front, "GET", path, headers=headers)
    assert status == 200, body[:500]
    return json.loads(body)


def test_query_string_and_percent_encoded_non_ascii_path(front):
    env = env_of(front, "/env/caf%C3%A9/a%20b?x=1&y=%2F&z=%C3%BC")
    assert env["QUERY_STRING"] == "x=1&y=%2F&z=%C3%BC"
    assert env["REQUEST_URI"] == "/env/caf%C3%A9/a%20b?x=1&y=%2F&z=%C3%BC"
    assert env["PATH_INFO"].encode("latin-1") == "/env/café/a b".encode()
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_METHOD"] == "GET"


def test_repeated_headers_and_cookies_arrive_joined(front):
    env = env_of(front, "/env", headers=[("Cookie", "a=1"), ("Cookie", "b=2"),
                                         ("X-Multi", "one"), ("X-Multi", "two")])
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"


@pytest.mark.parametrize("size", [0, 1024, 20 << 20], ids=["0B", "1KB", "20MB"])
def test_post_bodies_arrive_exactly(front, size):
    data = os.urandom(1024) * (size // 1024) if size else b""
    status, _, body = fetch(front, "POST", "/hash", body=data,
                            headers=[("Content-Type", "application/octet-stream")])
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert answer["size"] == size
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert answer["content_type"] == "application/octet-stream"


def test_chunked_upload_arrives_with_its_length(front):
    pieces = [b"a" * 1000, b"b" * 100_000, b"c" * 7]
    status, _, body = fetch(front, "POST", "/hash", body=pieces, chunked=True)
    if front.name == "apache" and status == 411:
        pytest.xfail("Apache's mod_proxy_scgi refuses a chunked request body (411)")
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert answer["size"] == 101_007
    assert answer["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


TEMP_FILE = "a client request body is buffered to a temporary file"


def _temp_file_lines(front):
    return [line for line in front.error_log.splitlines() if TEMP_FILE in line]


def _post_and_check(front, path, data):
    status, _, body = fetch(front, "POST", path, body=data,
                            headers=[("Content-Type", "application/octet-stream")])
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert (answer["size"], answer["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_nginx_keeps_a_100kib_body_in_memory_and_writes_a_200kib_one_to_a_file(backend):
    # Its own nginx, so that the error log (level info) holds only these two requests.
    front = _front("nginx", [backend.address])
    try:
        assert "client_body_buffer_size 128k;" in front.snippet  # the generated text runs
        _post_and_check(front, "/hash?100k", os.urandom(100 << 10))
        assert _temp_file_lines(front) == []
        _post_and_check(front, "/hash?200k", os.urandom(200 << 10))
        # nginx may write the line just after it answered.
        wait_until(lambda: _temp_file_lines(front), timeout=5,
                   message="nginx to log the 200 KiB body's temporary file")
    finally:
        front.stop()
    # With nginx stopped the log is complete: one temporary file, the 200 KiB body's.
    lines = _temp_file_lines(front)
    assert len(lines) == 1 and 'request: "POST /hash?200k HTTP/1.1"' in lines[0], lines


def _peak_rss(pids):
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total = max(total, int(line.split()[1]) * 1024)
    return total


def test_streamed_50mb_response_in_constant_worker_memory(front, backend):
    pids = worker_pids(backend.pid)
    before = _peak_rss(pids)
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60)
    try:
        conn.request("GET", "/stream?50")
        response = conn.getresponse()
        assert response.status == 200
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
    finally:
        conn.close()
    assert size == 50 << 20
    assert worker_pids(backend.pid) == pids
    assert _peak_rss(pids) - before < 20 << 20


def test_head_204_and_304_have_no_body(front):
    status, headers, body = fetch(front, "HEAD", "/head")
    assert (status, body) == (200, b"")
    for code in (204, 304):
        status, headers, body = fetch(front, "GET", f"/status/{code}")
        assert (status, body) == (code, b"")


def test_redirect_with_several_set_cookie_headers(front):
    status, headers, _ = fetch(front, "GET", "/cookies")
    assert status == 302
    cookies = [v for k, v in headers if k.lower() == "set-cookie"]
    assert cookies == ["a=1; Path=/", "b=2; Path=/"]
    assert any(k.lower() == "location" and v.endswith("/env") for k, v in headers)


def test_app_error_is_a_500_without_the_traceback(front, backend):
    status, _, body = fetch(front, "GET", "/error")
    assert status == 500
    assert b"secret detail" not in body and b"Traceback" not in body
    backend.wait_for_log("secret detail that must not reach the client")


# --- mounted under a prefix, the classic handler, unix sockets -------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_app_under_a_prefix_gets_script_name_and_path_info(name):
    # nginx and Apache send no usable SCRIPT_NAME: the server is told the prefix.
    args = ("--script-name", "/prefix") if name != "lighttpd" else ()
    backend = _serve(APP, *args)
    front = _front(name, [backend.address], prefix="/prefix")
    try:
        env = env_of(front, "/prefix/env/x%20y?q=1")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/env/x y")
        assert env["QUERY_STRING"] == "q=1"
    finally:
        front.stop()
        backend.stop()


@pytest.mark.parametrize("name", NAMES)
def test_classic_handler_env_over_a_unix_socket(name):
    folder = Path(tempfile.mkdtemp(prefix="scgikit-sock-"))
    folder.chmod(0o755)
    sock = f"unix:{folder}/app.sock"
    backend = _serve(CLASSIC, "--socket-mode", "0666", bind=(sock,))
    front = _front(name, [sock])
    try:
        env = env_of(front, "/your/uri/?a=1&a=2")
        url = env.get("DOCUMENT_URI") or env.get("REQUEST_URI")
        assert url.startswith("/your/uri/")
        assert env["QUERY_STRING"] == "a=1&a=2"
        assert env["SCGI"] == "1" and env["REQUEST_METHOD"] == "GET"
    finally:
        front.stop()
        backend.stop()


# --- the backend goes away and comes back -------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_backend_down_gives_502_or_503_and_serving_resumes(name):
    backend = _serve(APP)
    address = backend.address
    front = _front(name, [address])
    try:
        assert fetch(front, "GET", "/env")[0] == 200
        backend.stop()
        status, _, body = fetch(front, "GET", "/env")
        assert status in (502, 503), (status, body[:200])
        backend = ServerProcess.scgikit(APP, "--workers", "1", bind=(address,)).start()
        wait_until(lambda: fetch(front, "GET", "/env")[0] == 200, timeout=30, interval=0.2)
    finally:
        front.stop()
        backend.stop()


# --- what the docs say about each front end -----------------------------------------------------

DOCS = Path(__file__).parent.parent / "docs" / "frontends.md"


def _docs_table():
    columns = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for name, mark in zip(NAMES, cells[1:]):
                if mark == "yes":
                    columns.setdefault(name, set()).add(cells[0].strip("`"))
    return columns


@pytest.mark.parametrize("name", NAMES)
def test_docs_table_lists_what_each_front_end_sends(name):
    backend = _serve(CLASSIC)
    front = _front(name, [backend.address])
    try:
        status, _, body = fetch(front, "POST", "/a%20b/c?x=1", body=b"abc", headers=[
            ("Content-Type", "text/plain"), ("Cookie", "a=1")])
    finally:
        front.stop()
        backend.stop()
    assert status == 200
    sent = set(json.loads(body)) - {"HTTP_COOKIE"}
    assert sent == _docs_table()[name]


@pytest.mark.parametrize("name", NAMES)
def test_only_apache_refuses_an_http_status_line_from_the_backend(name):
    from rogue import RogueServer

    with RogueServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhi") as rogue:
        front = _front(name, [rogue.address])
        try:
            status, _, body = fetch(front, "GET", "/")
        finally:
            front.stop()
    # Why scgikit always answers "Status: 200 OK": Apache turns the other form into a 500.
    assert (status, body) == ((500, body) if name == "apache" else (200, b"hi"))


@pytest.mark.parametrize("name", NAMES)
def test_nginx_and_apache_stamp_the_request_for_the_queue_time(name, tmp_path):
    """The generated config's stamp (nginx: REQUEST_START, Apache: X-Request-Start) gives
    the access log a queue time, whatever X-Request-Start the client sent (nginx's variable
    comes first, Apache replaces the header); lighttpd has none to give, and passes the
    client's on (docs/frontends.md)."""
    log = tmp_path / "access.log"
    backend = _serve(APP, "--access-log", str(log), "--access-log-format",
                     "{uri} queue={queue_ms}")
    front = _front(name, [backend.address])
    try:
        status, _, _ = fetch(front, "GET", "/head", headers=[("X-Request-Start", "t=1")])
    finally:
        front.stop()
        backend.stop()
    assert status == 200
    (queued,) = [line.split(" queue=")[1] for line in log.read_text().splitlines()
                 if line.startswith("/head ")]
    if name == "lighttpd":
        assert queued == "-"  # the client's t=1 (1970) is no usable stamp
    else:
        assert float(queued) >= 0.0
