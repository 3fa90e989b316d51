"""The request corpus: every file in tests/corpus/requests/ sent as is to a real server.

Each file holds the raw bytes of one request, valid or hostile, written by
scripts/make-corpus from readable definitions; tests/corpus/expected.json gives
the server's options, how to send each file, and what must come of it: a status
(200 with the fixture app's answer, 400, 408, 413, 431) or "close" (dropped
without an answer), and a fragment of the line logged.  One server per transport
serves the whole module; after every case it must still answer a normal request.
Every server runs once with the C parse_head and once with the pure one (SCGIKIT_PURE=1).
"""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from figures import record
from parse_heads import NOT_BUILT, _speedups
from scgi_raw import connect, parse_answer, request
from servers import ServerProcess, child_env, for_model

pytestmark = pytest.mark.one_path(reason="it serves every request with the C and the pure "
                                         "parse_head itself")

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
MANIFEST = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
CASES: dict[str, dict] = MANIFEST["cases"]
TRICKLE_PAUSE = 0.3  # between bytes in "trickle" mode: the client's behaviour, not a wait


@pytest.fixture(scope="module", params=["tcp", "unix"])
def transport(request, tmp_path_factory):
    """As conftest's, but for the module: one server per transport serves every case."""
    if request.param == "tcp":
        return "127.0.0.1:0"
    return f"unix:{tmp_path_factory.mktemp('corpus')}/scgi.sock"


@pytest.fixture(scope="module")
def model(request):
    """As conftest's, but for the module (which parametrizes it over every worker model):
    one server per model serves every case, the fixture app's ASGI twin on asyncio."""
    return request.param


@pytest.fixture(scope="module", params=["c", "pure"])
def parser(request):
    """The server's parse_head: the C accelerator, or the pure function."""
    if request.param == "c" and _speedups is None:
        pytest.skip(NOT_BUILT)
    return request.param


@pytest.fixture(scope="module")
def server(transport, model, parser):
    spec = MANIFEST["server"]
    target, args = for_model(model, spec["app"], spec["args"])
    env = child_env(SCGIKIT_PURE="1" if parser == "pure" else "")
    server = ServerProcess.scgikit(target, *args, bind=[transport], env=env).start()
    server.wait_for_log("C accelerator: on" if parser == "c" else "C accelerator: off")
    server.tried = server.as_expected = 0
    yield server
    server.stop()
    if server.tried:
        record("hostile and valid requests of the corpus (tests/corpus), one server",
               "unix" if transport.startswith("unix:") else "tcp", model=model, parser=parser,
               as_expected=f"{server.as_expected}/{server.tried}")


def send(address: str, data: bytes, mode: str) -> bytes:
    """Send ``data`` as ``mode`` says (see "send_modes" in the manifest); return the answer."""
    with connect(address, timeout=15) as sock:
        if sock.family != socket.AF_UNIX and mode in ("bytes", "trickle", "trickle-body"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if mode in ("whole", "stall"):
                sock.sendall(data)
            elif mode == "bytes":
                for i in range(len(data)):
                    sock.send(data[i : i + 1])
            elif mode in ("trickle", "trickle-body"):
                start = head_size(data) if mode == "trickle-body" else 0
                sock.sendall(data[:start])
                for i in range(start, len(data)):
                    sock.send(data[i : i + 1])
                    if select.select([sock], [], [], TRICKLE_PAUSE)[0]:
                        break  # the server answered or closed
            if mode in ("whole", "bytes"):
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed early: what it answered, if anything, is still readable
        return read_until_closed(sock)


def head_size(data: bytes) -> int:
    """Where the body starts: after the header netstring's length, colon, block and comma."""
    colon = data.index(b":")
    return colon + 1 + int(data[:colon]) + 1


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except ConnectionResetError:
        pass  # a reset after a close with unread bytes: whatever came before it counts
    return b"".join(chunks)


def still_serving(server: ServerProcess) -> None:
    answer = request(server.address, "/after", method="POST", body=b"ok")
    assert answer.status == 200
    assert b'"size": 2' in answer.body


def outcome_of(raw: bytes) -> int | str:
    """What a case came to: "close" (no answer) or the status answered."""
    return "close" if raw == b"" else parse_answer(raw).status


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES, ids=[name.removesuffix(".scgi") for name in NAMES])
def test_corpus_case(server, name):
    case = CASES[name]
    data = (CORPUS / "requests" / name).read_bytes()
    start = len(server.lines)
    raw = send(server.address, data, case["send"])
    server.tried += 1
    assert b"Traceback" not in raw
    outcome = outcome_of(raw)
    # A case the server gets wrong today is pinned to what it does, until it is fixed.
    expected = case.get("today", case)
    if "today" in case:
        assert outcome != case["outcome"], (
            f"{name} now has its documented outcome: drop 'today' in scripts/make-corpus")
    assert outcome == expected["outcome"], raw[:300]
    if outcome == 200:
        assert json.loads(parse_answer(raw).body) == case["answer"]
    if expected["log"]:
        server.wait_for_log(re.escape(expected["log"]), start=start)
    still_serving(server)
    lines = server.lines[start:]
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    if not expected["log"]:
        complaints = [line for line in lines if "[WARNING]" in line or "[ERROR]" in line]
        assert not complaints, "\n".join(complaints)
    server.as_expected += 1  # and the server still serves: checked above
    if "today" in case:
        pytest.xfail(f"docs/server.md says {case['outcome']}: {case['today']['note']}")


def test_every_file_is_in_the_manifest_and_every_case_has_a_file():
    files = {path.name for path in (CORPUS / "requests").iterdir()}
    assert files == set(CASES)


def test_manifest_entries_are_complete():
    for name, case in CASES.items():
        assert case["send"] in MANIFEST["send_modes"], name
        assert case["outcome"] in ("close", 200, 400, 408, 413, 431), name
        assert case["why"], name
        assert ("answer" in case) == (case["outcome"] == 200), name
        if "today" in case:
            assert case["today"]["outcome"] != case["outcome"], name
            assert case["today"]["note"], name


def test_corpus_files_are_what_make_corpus_writes():
    script = HERE.parent / "scripts" / "make-corpus"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_corpus_covers_every_outcome():
    outcomes = [case["outcome"] for case in CASES.values()]
    assert len(CASES) >= 52
    assert {200, 400, 408, 413, 431, "close"} <= set(outcomes)
