"""The client and the gateway send the variables nginx sends, for the same HTTP requests.

A classic handler that answers its variables untouched sits behind real nginx
(with Debian's scgi_params), behind the development gateway, and is asked
directly by `scgikit.client`; the three sets must agree.
"""

import json
import socket
import sys
import tempfile
from pathlib import Path

import pytest
from frontends import FrontEnd, available
from servers import ServerProcess, free_port

from scgikit import client

CLASSIC = "tests/fixtureapps/frontend_apps.py:EnvDump"

REQUESTS = [
    ("GET", "/a%20b/c?x=1&y=%2F", [("Host", "example.com"), ("Cookie", "a=1"), ("Cookie", "b=2"),
                                   ("X-Multi", "one"), ("X-Multi", "two"), ("Accept", "*/*")],
     b""),
    ("POST", "/form", [("Host", "localhost"), ("Content-Type", "application/x-www-form-urlencoded"),
                       ("Content-Length", "7")], b"a=1&b=2"),
    ("PUT", "/x/../y/./caf%C3%A9/", [("Host", "h.example"), ("User-Agent", "test/1.0"),
                                     ("Content-Length", "0")], b""),
    ("DELETE", "/item/7?force", [("Host", "localhost"), ("X-Requested-With", "test")], b""),
]
# Differ by design: the port each listener got, where each keeps its files.
UNCOMPARABLE = {"REMOTE_PORT", "SERVER_PORT", "DOCUMENT_ROOT"}


@pytest.fixture(scope="module")
def sites():
    reason = available("nginx")
    if reason:
        pytest.skip(reason)
    pytest.importorskip("h11", reason="the gateway needs h11 (pip install 'scgikit[http]')")
    backend = ServerProcess.scgikit(CLASSIC, "--workers", "1").start()
    nginx = FrontEnd("nginx", Path(tempfile.mkdtemp(prefix="scgikit-nginx-")),
                     [backend.address]).start()
    port = free_port()
    gateway = ServerProcess([sys.executable, "-m", "scgikit", "gateway", "--listen",
                             f"127.0.0.1:{port}", "--to", backend.address]).start(
        ready="HTTP gateway")
    yield backend.address, nginx.port, port
    gateway.stop()
    nginx.stop()
    backend.stop()


def over_http(port, method, target, headers, body):
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    if b"chunked" in head.lower():
        size, _, rest = payload.partition(b"\r\n")
        payload = rest[: int(size, 16)]
    return json.loads(payload)


@pytest.mark.parametrize(("method", "target", "headers", "body"), REQUESTS,
                         ids=[r[0] + " " + r[1] for r in REQUESTS])
def test_gateway_and_client_send_what_nginx_sends(sites, method, target, headers, body):
    backend, nginx_port, gateway_port = sites
    from_nginx = over_http(nginx_port, method, target, headers, body)
    from_gateway = over_http(gateway_port, method, target, headers, body)
    from_client = json.loads(client.request(
        backend, target, method, headers=headers + [("Connection", "close")], body=body).body)
    for name in UNCOMPARABLE:
        for env in (from_nginx, from_gateway, from_client):
            env.pop(name, None)
    # The generated config adds nginx's stamp for the queue time (scgi_param REQUEST_START
    # $msec), a time of nginx's own that neither the gateway nor the client sends.
    assert float(from_nginx.pop("REQUEST_START")) > 0
    # Debian's scgi_params sets HTTP_HOST to $host, which drops a port; ours keep the header.
    host = dict(headers)["Host"]
    assert from_gateway.pop("HTTP_HOST") == from_client.pop("HTTP_HOST") == host
    assert from_nginx.pop("HTTP_HOST") == host.split(":")[0]
    assert from_gateway == from_nginx
    assert from_client == from_nginx
