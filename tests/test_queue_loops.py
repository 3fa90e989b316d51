"""A worker's accept loop (workers/loops.py): the C QueueLoop and its Python twin, alike.

Every behaviour is tested on both implementations, over real listening sockets
(TCP and unix): what ``serve()`` answers, what ``take()`` starts and
``take_one()`` returns, what each hands back to the model's Python code, and how
each reads and writes the ``WorkerState`` it shares with the worker.  The readiness
rule the C loops apply is compared with the Python one (``connection/intake.py``) on
random sizes.
"""

from __future__ import annotations

import _socket
import errno
import os
import signal
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netstrings import scgi_head
from parse_heads import NOT_BUILT, _speedups, c_parse_head
from references import leak_check

from scgikit.connection.intake import readiness
from scgikit.protocol import DEFAULT_MAX_HEADER_SIZE
from scgikit.workers import loops


def c_sockets():
    """The C module, its socket type checked as the accelerator checks it."""
    if _speedups is None:
        pytest.skip(NOT_BUILT)
    c_parse_head()  # the C parser, set up even where SCGIKIT_PURE=1 kept protocol from it
    ours, theirs = socket.socketpair()
    sample = _socket.socket(ours.family, ours.type, 0, ours.detach())
    try:
        assert _speedups.socket_layout_matches(sample)
    finally:
        sample.close()
        theirs.close()
    return _speedups


@pytest.fixture(params=["c", "pure"])
def kind(request):
    """Each implementation: (QueueLoop, WorkerState)."""
    if request.param == "c":
        c = c_sockets()
        return c.QueueLoop, c.WorkerState
    return loops.PureQueueLoop, loops.PureWorkerState


@pytest.fixture(params=["tcp", "unix"])
def listener(request, tmp_path):
    if request.param == "tcp":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / "l.sock"))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


class Recorder:
    """What a loop calls, recorded: the sync model's answer and the asyncio model's start."""

    def __init__(self):
        self.slots = memoryview(bytearray(16)).cast("d")
        self.answered, self.records, self.logged, self.busy_since, self.started = [], [], [], [], []
        self.recorded_variables = []

    def answer(self, conn, data, variables, length, start):
        self.busy_since.append(self.slots[1])
        self.answered.append((bytes(data[start:start + length]), variables["REQUEST_URI"]))
        conn.sendall(b"Status: 200 OK\r\n\r\nok")
        return "200 OK", 20

    def record(self, status, sent, length, accepted, variables):
        self.records.append((status, sent, length, accepted))
        self.recorded_variables.append(variables)

    def log_access(self, variables, status, sent, accepted, model):
        self.logged.append((variables["REQUEST_URI"], status, sent, accepted, model))

    def start(self, conn, data, parsed, accepted, now):
        self.started.append((data, parsed, accepted, now))
        conn.sendall(b"Status: 200 OK\r\n\r\nok")
        conn.close()

    def forget(self):
        for kept in (self.answered, self.records, self.logged, self.busy_since, self.started,
                     self.recorded_variables):
            kept.clear()


def make_loop(kind, listener, *, limit=1 << 20, max_requests=0, buffer_size=1000,
              answer=None, start=None):
    """A loop of ``kind`` on ``listener`` as the workers make theirs, and its recorder."""
    queue_loop, worker_state = kind
    seen = Recorder()
    loop = queue_loop(state=worker_state(max_requests), listener=listener, recv_size=65536,
                      max_header_size=DEFAULT_MAX_HEADER_SIZE, body_limit=limit,
                      buffer_size=buffer_size, slots=seen.slots, slot=1,
                      answer=answer or seen.answer, record=seen.record,
                      log_access=seen.log_access, model="sync", start=start or seen.start)
    return loop, seen


def scgi_request(uri, body=b""):
    pairs = [("CONTENT_LENGTH", str(len(body))), ("SCGI", "1"), ("REQUEST_URI", uri)]
    return scgi_head(pairs) + body


def queued(listener, *requests):
    """Clients that connected to ``listener`` and sent each request (None: nothing yet)."""
    clients = []
    for data in requests:
        client = socket.socket(listener.family)
        client.connect(listener.getsockname())
        if data is not None:
            client.sendall(data)
        clients.append(client)
    return clients


def answer_of(client):
    client.settimeout(10)
    got = b""
    while chunk := client.recv(4096):
        got += chunk
    client.close()
    return got


def drop_queued(listener, clients):
    """Take and close what is still queued, and close its clients."""
    for client in clients:
        listener.accept()[0].close()
        client.close()


# --- serve(): the sync model -----------------------------------------------------------------

def test_serve_answers_each_whole_request_counts_logs_and_closes_it(kind, listener):
    loop, seen = make_loop(kind, listener)
    clients = queued(listener, scgi_request("/a"), scgi_request("/b", b"body"),
                     scgi_request("/c", b"x" * 30000))
    before = time.monotonic()
    assert loop.serve() is None  # the queue is empty
    after = time.monotonic()
    assert [answer_of(client) for client in clients] == [b"Status: 200 OK\r\n\r\nok"] * 3
    assert seen.answered == [(b"", "/a"), (b"body", "/b"), (b"x" * 30000, "/c")]
    assert (loop.state.started, loop.state.handled) == (3, 3)
    assert [r[:3] for r in seen.records] == [("200 OK", 20, 0), ("200 OK", 20, 4),
                                             ("200 OK", 20, 30000)]
    assert [entry[0] for entry in seen.logged] == ["/a", "/b", "/c"]
    # The metrics get the request's variables too (a front end's stamp: queue_time.py).
    assert [v["REQUEST_URI"] for v in seen.recorded_variables] == ["/a", "/b", "/c"]
    assert {entry[4] for entry in seen.logged} == {"sync"}
    accepted = [r[3] for r in seen.records]
    assert before <= accepted[0] <= accepted[1] <= accepted[2] <= after  # time.monotonic()'s
    assert seen.busy_since == accepted  # the heartbeat slot held while each was answered
    assert seen.slots[1] == 0.0 and seen.slots[0] == 0.0


@pytest.mark.parametrize("method", ["serve", "take", "take_one"])
@pytest.mark.parametrize("case, sent", [
    ("partial head", scgi_request("/p")[:10]),
    ("partial body", scgi_request("/p", b"body")[:-2]),
    ("malformed head", b"5:SCGI\x00,"),
    ("body over the limit", scgi_request("/p", b"y" * 101)),
    ("closed before a byte", b""),
])
def test_the_loops_hand_back_any_request_they_do_not_take(kind, listener, method, case, sent):
    # serve() takes a request whose body came whole, take() one whose body came whole or
    # is over buffer_size; neither one over the limit.
    loop, seen = make_loop(kind, listener, limit=100)
    (client,) = queued(listener, sent)
    if case == "closed before a byte":
        client.shutdown(socket.SHUT_WR)
    try:
        conn, data, accepted = getattr(loop, method)()
        try:
            assert type(conn) is _socket.socket and conn.fileno() >= 0  # still open
            assert data == sent and isinstance(accepted, float)
        finally:
            conn.close()
    finally:
        client.close()
    assert loop.state.started == 0 and loop.state.handled == 0
    assert seen.answered == seen.records == seen.logged == seen.started == []


@pytest.mark.parametrize("method", ["serve", "take", "take_one"])
def test_the_loops_hand_back_a_connection_that_sent_nothing_yet_with_the_receive_error(
        kind, listener, method):
    loop, _ = make_loop(kind, listener)
    loop.state.accept_failing_since = 12.5
    (client,) = queued(listener, None)
    try:
        conn, error, accepted = getattr(loop, method)()
        conn.close()
        assert isinstance(error, BlockingIOError) and isinstance(accepted, float)
        assert loop.state.accept_failing_since is None  # an accept worked
    finally:
        client.close()


@pytest.mark.parametrize("method", ["serve", "take"])
def test_the_loops_return_an_accept_error_and_keep_a_failing_accept_until_one_works(
        kind, listener, method):
    with socket.socket() as idle:  # not listening
        loop, _ = make_loop(kind, idle)
        error = getattr(loop, method)()
        assert isinstance(error, OSError) and error.errno == errno.EINVAL
    loop, _ = make_loop(kind, listener)
    loop.state.accept_failing_since = 12.5
    assert getattr(loop, method)() is None and loop.state.accept_failing_since == 12.5
    clients = queued(listener, scgi_request("/a"))
    assert getattr(loop, method)() is None and loop.state.accept_failing_since is None
    assert answer_of(clients[0])


@pytest.mark.parametrize("method", ["serve", "take"])
@pytest.mark.parametrize("flags, taken", [
    ({"stopping": True}, 0),  # a stop without draining: none taken
    ({"stopping": True, "drain_queue": True}, 2),  # a full stop takes what is queued
])
def test_the_loops_take_nothing_once_the_worker_stops_taking(kind, listener, method, flags,
                                                             taken):
    loop, seen = make_loop(kind, listener)
    clients = queued(listener, scgi_request("/a"), scgi_request("/b"))
    for name, value in flags.items():
        setattr(loop.state, name, value)
    assert getattr(loop, method)() is None
    assert len(seen.answered if method == "serve" else seen.started) == taken
    for client in clients[:taken]:
        assert answer_of(client)
    drop_queued(listener, clients[taken:])


def test_serve_stops_after_the_request_that_reaches_max_requests(kind, listener):
    loop, _ = make_loop(kind, listener, max_requests=2)
    loop.state.drain_queue = True  # as a full stop had begun: the recycle still wins
    clients = queued(listener, *(scgi_request(f"/{n}") for n in range(3)))
    assert loop.serve() is None
    state = loop.state
    assert (state.started, state.handled, state.stopping, state.drain_queue) == (
        2, 2, True, False)
    assert answer_of(clients[0]) and answer_of(clients[1])
    drop_queued(listener, clients[2:])  # the third is still queued, for another worker


def test_serve_runs_signal_handlers_between_requests(kind, listener):
    def answer_and_signal(*args):
        os.kill(os.getpid(), signal.SIGUSR1)
        return seen.answer(*args)

    loop, seen = make_loop(kind, listener, answer=answer_and_signal)
    previous = signal.signal(signal.SIGUSR1,
                             lambda signum, frame: setattr(loop.state, "stopping", True))
    try:
        clients = queued(listener, scgi_request("/a"), scgi_request("/b"))
        assert loop.serve() is None
        assert len(seen.answered) == 1 and loop.state.stopping
        assert answer_of(clients[0])
        drop_queued(listener, clients[1:])
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_serve_closes_the_connection_and_raises_what_the_answer_raised(kind, listener):
    def fails(*args):
        seen.busy_since.append(seen.slots[1])
        raise KeyboardInterrupt

    loop, seen = make_loop(kind, listener, answer=fails)
    clients = queued(listener, scgi_request("/a"), scgi_request("/b"))
    with pytest.raises(KeyboardInterrupt):
        loop.serve()
    assert answer_of(clients[0]) == b""  # closed, nothing sent
    assert (loop.state.started, loop.state.handled) == (1, 1) and seen.slots[1] == 0.0
    assert seen.busy_since[0] > 0.0 and seen.records == []
    drop_queued(listener, clients[1:])


# --- take(): the asyncio model ---------------------------------------------------------------

def test_take_starts_each_ready_request_with_its_head_parsed_and_its_accept_time(kind,
                                                                               listener):
    loop, seen = make_loop(kind, listener, buffer_size=1000)
    big = scgi_request("/big", b"z" * 5000)
    clients = queued(listener, scgi_request("/a"), scgi_request("/b", b"body"), big[:200])
    before = time.monotonic()
    assert loop.take() is None  # the queue is empty
    after = time.monotonic()
    assert [answer_of(client) for client in clients] == [b"Status: 200 OK\r\n\r\nok"] * 3
    assert [data for data, *_ in seen.started] == [scgi_request("/a"),
                                                   scgi_request("/b", b"body"), big[:200]]
    # A body over buffer_size starts the app with what came: the rest is read as it asks.
    assert [parsed[0]["REQUEST_URI"] for _, parsed, _, _ in seen.started] == ["/a", "/b", "/big"]
    assert [parsed[1] for _, parsed, _, _ in seen.started] == [0, 4, 5000]
    accepted = [entry[2] for entry in seen.started]
    assert before <= accepted[0] <= accepted[1] <= accepted[2] <= after
    assert all(entry[3] == entry[2] for entry in seen.started)  # now: the accept's time
    assert loop.state.started == 0  # the model counts what it starts (asyncio: handle)


def test_take_raises_what_start_raised_and_takes_no_more(kind, listener):
    def fails(conn, *args):
        seen.started.append(args)
        raise KeyboardInterrupt

    loop, seen = make_loop(kind, listener, start=fails)
    clients = queued(listener, scgi_request("/a"), scgi_request("/b"))
    with pytest.raises(KeyboardInterrupt):
        loop.take()
    assert len(seen.started) == 1
    assert answer_of(clients[0]) == b""  # the connection dropped with the call, unanswered
    drop_queued(listener, clients[1:])


# --- take_one(): the threads model's pool threads -------------------------------------------

def test_take_one_returns_one_ready_request_with_its_head_parsed_and_leaves_the_rest(kind,
                                                                                    listener):
    loop, seen = make_loop(kind, listener, buffer_size=1000)
    big = scgi_request("/big", b"z" * 5000)
    clients = queued(listener, scgi_request("/a", b"body"), big[:200])
    before = time.monotonic()
    taken = [loop.take_one(), loop.take_one()]
    after = time.monotonic()
    assert loop.take_one() is None  # the queue is empty
    try:
        # A body over buffer_size is ready with what came: the rest is read as the app asks.
        assert [(data, parsed[0]["REQUEST_URI"], parsed[1]) for _, data, parsed, _ in taken] \
            == [(scgi_request("/a", b"body"), "/a", 4), (big[:200], "/big", 5000)]
        assert all(type(conn) is _socket.socket and conn.fileno() >= 0 for conn, *_ in taken)
        assert before <= taken[0][3] <= taken[1][3] <= after
        assert seen.started == seen.answered == [] and loop.state.started == 0
    finally:
        for conn, *_ in taken:
            conn.close()
        for client in clients:
            client.close()


def test_take_one_takes_nothing_once_the_worker_stops_taking(kind, listener):
    loop, _ = make_loop(kind, listener)
    clients = queued(listener, scgi_request("/a"))
    loop.state.stopping = True
    assert loop.take_one() is None
    loop.state.stopping = False
    conn, *_ = loop.take_one()
    conn.close()
    clients[0].close()


# --- the state and the rule they share with the worker ---------------------------------------

def test_count_start_stops_the_accepts_at_max_requests_and_only_there(kind):
    _, worker_state = kind
    state = worker_state(3)
    state.drain_queue = True
    assert [state.count_start() for _ in range(2)] == [False, False] and not state.stopping
    assert state.count_start() is True
    assert (state.started, state.stopping, state.drain_queue) == (3, True, False)
    assert state.count_start() is False and state.started == 4  # counted, nothing more
    unlimited = worker_state()
    assert not any(unlimited.count_start() for _ in range(50)) and not unlimited.stopping


def test_a_state_that_is_stopping_already_is_not_stopped_again_by_max_requests(kind):
    _, worker_state = kind
    state = worker_state(1)
    state.stopping = state.drain_queue = True  # a full stop: the queue is served
    assert state.count_start() is False and state.drain_queue


def test_the_c_state_reads_and_writes_as_the_pure_one():
    c = c_sockets()
    for state in (c.WorkerState(5), loops.PureWorkerState(5)):
        assert (state.stopping, state.drain_queue, state.started, state.handled,
                state.max_requests, state.accept_failing_since) == (False, False, 0, 0, 5, None)
        state.stopping, state.handled, state.accept_failing_since = True, 7, 3.5
        assert (state.stopping, state.handled, state.accept_failing_since) == (True, 7, 3.5)
        state.accept_failing_since = None
        assert state.accept_failing_since is None
    with pytest.raises(ValueError):
        c.WorkerState(-1)
    with pytest.raises(TypeError):  # a flag is a bool, as the pure state's are
        c.WorkerState().stopping = 1


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.integers(0, 1 << 40),
       st.integers(0, 1 << 40))
def test_the_c_readiness_rule_is_the_python_one(length, received, buffer_size, limit):
    if _speedups is None:
        pytest.skip(NOT_BUILT)
    assert _speedups.readiness(length, received, buffer_size, limit) == readiness(
        length, received, buffer_size, limit)


@pytest.mark.parametrize("case", [(0, 0, 0, 0), (10, 9, 10, 10), (10, 9, 9, 10),
                                  (11, 11, 0, 10), (10, 10, 0, 10), (5, 100, 0, 1 << 62)])
def test_the_c_readiness_rule_is_the_python_one_at_the_edges(case):
    if _speedups is None:
        pytest.skip(NOT_BUILT)
    assert _speedups.readiness(*case) == readiness(*case)


# --- the C loop's own checks --------------------------------------------------------------------

@pytest.mark.parametrize("change, error", [
    ({"state": None}, TypeError), ({"state": "a state"}, TypeError),
    ({"listener": None}, TypeError), ({"recv_size": 0}, ValueError),
    ({"body_limit": -2}, ValueError), ({"max_header_size": "4096"}, TypeError),
    ({"slot": -1}, ValueError), ({"answer": 3}, TypeError), ({"model": 3}, TypeError),
])
def test_the_c_loop_checks_its_arguments(listener, change, error):
    c = c_sockets()
    given = dict(state=c.WorkerState(), listener=listener, recv_size=65536,
                 max_header_size=4096, body_limit=100)
    with pytest.raises(error):
        c.QueueLoop(**{**given, **change})
    with pytest.raises(TypeError):
        c.QueueLoop(**{name: value for name, value in given.items() if name != "body_limit"})


@pytest.mark.parametrize("slots, slot, error", [
    (bytearray(16), 1, ValueError), (b"x" * 16, 1, BufferError),
    (memoryview(bytearray(16)).cast("d"), 2, ValueError),
])
def test_the_c_loop_refuses_a_heartbeat_that_is_not_a_slot_of_doubles(listener, slots, slot,
                                                                       error):
    c = c_sockets()
    loop = c.QueueLoop(state=c.WorkerState(), listener=listener, recv_size=65536,
                       max_header_size=4096, body_limit=100, slots=slots, slot=slot,
                       answer=Recorder().answer)
    with pytest.raises(error):
        loop.serve()
    with pytest.raises(TypeError):  # take() without start=, serve() without answer=
        loop.take()


@pytest.mark.parametrize("method", ["serve", "take"])
def test_the_c_loop_keeps_or_leaks_no_reference(listener, method):
    c = c_sockets()
    loop, seen = make_loop((c.QueueLoop, c.WorkerState), listener)
    address = listener.getsockname()
    request = scgi_request("/a", b"body")
    run = getattr(loop, method)

    def once():
        seen.forget()
        with socket.socket(listener.family) as client:
            client.connect(address)
            client.sendall(request)
            assert run() is None
            with socket.socket(listener.family) as other:
                other.connect(address)
                other.sendall(request[:5])
                conn, _, _ = run()
                conn.close()

    leak_check(once, loop, loop.state, seen.slots, rounds=1000)


def test_the_c_take_one_keeps_or_leaks_no_reference(listener):
    c = c_sockets()
    loop, seen = make_loop((c.QueueLoop, c.WorkerState), listener)
    address = listener.getsockname()
    request = scgi_request("/a", b"body")

    def once():
        with socket.socket(listener.family) as client, \
                socket.socket(listener.family) as other:
            client.connect(address)
            client.sendall(request)
            other.connect(address)
            other.sendall(request[:5])
            for expected in (4, 3):  # the ready request, then the partial one handed back
                taken = loop.take_one()
                assert len(taken) == expected
                taken[0].close()
            assert loop.take_one() is None

    leak_check(once, loop, loop.state, seen.slots, rounds=1000)
