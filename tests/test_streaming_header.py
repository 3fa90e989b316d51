"""An answer that streams tells nginx not to buffer it: ``X-Accel-Buffering: no``.

What streams is decided once (``scgikit.apps.streaming``): no Content-Length and a body
not known whole as the head goes out (a WSGI result that is not a list, tuple or file,
or the write() callable; an ASGI answer whose first body message has more_body), or
text/event-stream.  The app's own X-Accel-Buffering wins; ``--front-end-buffering``
turns the header off.  Proved three ways: the pure and C WSGI exchanges send the same
bytes; each worker model answers so over TCP and a unix socket; and real nginx passes
the first chunk of such a stream on at once, and holds it with the option.
"""

from __future__ import annotations

import io
import socket
import tempfile
from pathlib import Path

import pytest
import wsgi_apps
from frontends import FrontEnd, available
from parse_heads import NOT_BUILT, _speedups
from scgi_raw import read_all, request
from servers import ServerProcess, for_model, wait_until

from scgikit.apps import wsgi
from scgikit.apps.streaming import answer_heads

# kind (answer_kinds' query): the X-Accel-Buffering values its answer carries, by default.
KINDS = {
    "generator": ["no"],
    "write": ["no"],
    "list": [],
    "sized": [],
    "events": ["no"],
    "own": ["yes"],
    "own_no": ["no"],
    "file": [],
}
# ... and with --front-end-buffering: only the app's own.
WITH_OPTION = {kind: ["yes"] if kind == "own" else ["no"] if kind == "own_no" else []
               for kind in KINDS}


def buffering_values(answer):
    return [value for name, value in answer.headers if name.lower() == "x-accel-buffering"]


# --- the rule, and the pure and C WSGI exchanges as twins ---------------------------------

@pytest.mark.parametrize("headers, streaming, whole", [
    ([], True, False),
    ([("Content-Length", "3")], False, False),
    ([("content-type", "Text/Event-Stream; charset=utf-8")], True, True),
    ([("Content-Type", "text/event-stream"), ("Content-Length", "3")], True, True),
    ([("X-Accel-Buffering", "yes")], False, False),
    ([("Content-Type", "text/event-stream"), ("x-accel-buffering", "no")], False, False),
])
def test_the_rule_adds_the_header_to_the_streaming_head_only_where_it_applies(
        headers, streaming, whole):
    head = wsgi.encode_head("200 OK", headers)
    marked = head[:-2] + b"X-Accel-Buffering: no\r\n\r\n"
    assert answer_heads(head, headers, False) == (marked if streaming else head,
                                                  marked if whole else head)
    assert answer_heads(head, headers, True) == (head, head)


def answer(sock, run, kind, option):
    app = wsgi.WSGIAdapter(wsgi_apps.answer_kinds, "", "localhost", "80",
                           front_end_buffering=option)
    variables = {"REQUEST_METHOD": "GET", "QUERY_STRING": kind, "CONTENT_LENGTH": "0"}
    run(app, sock[0], variables)
    sock[0].shutdown(socket.SHUT_WR)
    return read_all(sock[1])


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
@pytest.mark.parametrize("option", [False, True], ids=["default", "front-end-buffering"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_c_exchange_sends_the_heads_the_pure_one_sends(monkeypatch, kind, option):
    environ_c, exchange_c, answer_whole_c = wsgi.c_pieces(_speedups)

    def called(pieces):
        def run(app, sock, variables):
            monkeypatch.setattr(wsgi, "build_environ", pieces[0])
            monkeypatch.setattr(wsgi, "new_exchange", pieces[1])
            app(sock, variables, 0, io.BytesIO())
        return run

    def whole(app, sock, variables):  # the C answer_whole: no Python frame of ours
        answer_whole_c(app, sock, b"", variables, 0, 0)

    answers = []
    for run in (called((wsgi.environ_pure, wsgi._Exchange)), called((environ_c, exchange_c)),
                whole):
        pair = socket.socketpair()
        with pair[0], pair[1]:
            answers.append(answer(pair, run, kind, option))
    assert answers[0] == answers[1] == answers[2]
    expected = (WITH_OPTION if option else KINDS)[kind]
    head = answers[0].partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert [line for line in head if line.lower().startswith(b"x-accel-buffering:")] == [
        b"X-Accel-Buffering: " + value.encode() for value in expected]


# --- each worker model, over TCP and a unix socket -----------------------------------------

def test_a_streaming_answer_says_no_buffering_and_a_whole_one_does_not(model, transport,
                                                                        serve):
    server = serve("wsgi_apps:answer_kinds", "--workers", "1", bind=[transport])
    for kind, expected in KINDS.items():
        got = request(server.address, f"/?{kind}")
        assert got.status == 200 and got.body in (b"one two", b"data: one\n\n"), kind
        assert buffering_values(got) == expected, kind


def test_front_end_buffering_leaves_only_the_apps_own_header(model, transport, serve):
    server = serve("wsgi_apps:answer_kinds", "--workers", "1", "--front-end-buffering",
                   bind=[transport])
    for kind, expected in WITH_OPTION.items():
        got = request(server.address, f"/?{kind}")
        assert got.status == 200, kind
        assert buffering_values(got) == expected, kind


# --- through real nginx ----------------------------------------------------------------------

def _upstream_read_all(port):
    """Whether nginx has read every byte the server sent on their one connection (to
    127.0.0.1:``port``): the server's side has nothing unacknowledged (tx_queue) and
    nginx's side nothing unread (rx_queue), as /proc/net/tcp says."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    established = [row for row in rows if row[3] == "01"]
    ours = [row for row in established if int(row[1].split(":")[1], 16) == port]
    theirs = [row for row in established if int(row[2].split(":")[1], 16) == port]
    if len(ours) != 1 or len(theirs) != 1:
        return False
    return ours[0][4].split(":")[0] == "00000000" and theirs[0][4].split(":")[1] == "00000000"


@pytest.fixture
def through_nginx(model, tmp_path):
    """Start ``scgikit serve gated_stream ARGS`` on ``model`` behind nginx; stopped after."""
    reason = available("nginx")
    if reason:
        pytest.skip(reason)
    started = []

    def start(*args):
        target, args = for_model(model, "wsgi_apps:gated_stream", ("--workers", "1", *args))
        server = ServerProcess.scgikit(target, *args).start()
        started.append(server)
        front = FrontEnd("nginx", Path(tempfile.mkdtemp(dir=tmp_path)), [server.address])
        started.append(front.start())
        return server, front

    yield start
    for each in reversed(started):
        each.stop()


def _ask(front, gate):
    client = socket.create_connection(("127.0.0.1", front.port), timeout=30)
    client.sendall(f"GET /stream?{gate} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    return client


def _read_to_end(client, received):
    while chunk := client.recv(65536):
        received += chunk
    return received


def test_nginx_passes_the_first_chunk_of_a_stream_on_while_the_app_still_waits(through_nginx,
                                                                               tmp_path):
    server, front = through_nginx()
    gate = tmp_path / "gate"
    gate.mkdir()
    received = b""
    with _ask(front, gate) as client:
        client.settimeout(0.2)

        def first_chunk_arrived():
            nonlocal received
            try:
                received += client.recv(65536)
            except TimeoutError:
                pass
            return b"first chunk\n" in received

        # Without the header nginx would hold the chunk: this wait would end in failure.
        wait_until(first_chunk_arrived, timeout=15,
                   message="the first chunk did not pass nginx while the app waited")
        assert not (gate / "release").exists()
        (gate / "release").touch()
        client.settimeout(30)
        received = _read_to_end(client, received)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"first chunk\nsecond chunk\n"
    assert b"x-accel-buffering" not in head.lower()  # nginx keeps it to itself


def test_with_front_end_buffering_nginx_holds_the_stream_until_its_end(through_nginx,
                                                                      tmp_path):
    server, front = through_nginx("--front-end-buffering")
    port = int(server.address.rpartition(":")[2])
    gate = tmp_path / "gate"
    gate.mkdir()
    with _ask(front, gate) as client:
        # The app has sent its first chunk, and nginx has read all of it: a chunk nginx
        # passes on would be on its way now (it writes to the client in the same step as
        # it reads); a buffered one stays in nginx's buffer until it fills or the answer
        # ends, and the app waits for the test to end it.
        wait_until(lambda: (gate / "sent").exists(), timeout=15)
        wait_until(lambda: _upstream_read_all(port), timeout=15)
        client.setblocking(False)
        before = b""
        try:
            while chunk := client.recv(65536):
                before += chunk
        except BlockingIOError:
            pass
        (gate / "release").touch()
        client.setblocking(True)
        client.settimeout(30)
        received = _read_to_end(client, before)
    assert before == b""  # not the chunk, nor the HTTP head (nginx holds it for the body)
    assert received.partition(b"\r\n\r\n")[2] == b"first chunk\nsecond chunk\n"
