"""A browser or curl pointed at the SCGI port gets an HTTP answer that says what to do."""

import shutil
import subprocess

import pytest
from scgi_raw import exchange_raw, request

# Every scenario on each WSGI worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")

HTTP_GET = (b"GET / HTTP/1.1\r\nHost: localhost:4000\r\nUser-Agent: curl/7.88.1\r\n"
            b"Accept: */*\r\n\r\n")


@pytest.fixture
def server(serve, transport):
    return serve("wsgi_apps:hello", "--workers", "1", bind=[transport])


def test_http_request_gets_an_http_400_explaining_the_scgi_port(server):
    raw = exchange_raw(server.address, HTTP_GET)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert b"Content-Type: text/plain; charset=utf-8" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    text = body.decode()
    assert "This is an SCGI endpoint" in text
    for hint in ("scgi_pass", "scgikit gateway", "--http", "scgikit request"):
        assert hint in text
    assert request(server.address, "/").status == 200  # and SCGI is served as before


def test_http_requests_on_the_scgi_port_are_logged_once_a_minute(server):
    for method in (b"GET", b"POST", b"HEAD"):
        exchange_raw(server.address, HTTP_GET.replace(b"GET", method, 1))
    server.wait_for_log(r"an HTTP request \(GET \.\.\.\) reached the SCGI port")
    assert request(server.address, "/").status == 200
    assert server.log.count("reached the SCGI port") == 1


def test_curl_pointed_at_the_scgi_port_prints_the_explanation(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (Debian package curl; scripts/install-test-deps)")
    if server.address.startswith("unix:"):
        argv = [curl, "-sS", "--unix-socket", server.address[5:], "http://localhost/"]
    else:
        argv = [curl, "-sS", f"http://{server.address}/"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr  # not "Empty reply from server" (52)
    assert "This is an SCGI endpoint" in result.stdout
