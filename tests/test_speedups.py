"""The C accelerator (scgikit._speedups): the same results as the pure code, always.

The C parse_head handles the well-formed head itself and hands everything else to
``parse_head_pure``; these tests compare the two on random, mutated and hostile
heads (hypothesis and the request corpus), check that the C path really is taken,
that it holds no reference or buffer it should not, and that the choice at import
(``SCGIKIT_PURE``) shows in ``scgikit --version`` and the server's start-up log.
The WSGI environ build and exchange are compared the same way, each test run on
both implementations, the exchange over real socket pairs, and so are the ASGI
scope's request headers (``header_pairs``) and the whole scope (``http_scope``).
"""

from __future__ import annotations

import _socket
import errno
import functools
import gc
import inspect
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import tracemalloc
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netstrings import netstring, scgi_head
from parse_heads import NOT_BUILT, _speedups, c_parse_head, nginx_head
from references import leak_check
from scgi_raw import request
from servers import ServerProcess, child_env

from scgikit.apps import asgi, wsgi
from scgikit.apps.request import c_header_pairs, header_pairs_pure, merge_cookie
from scgikit.apps.streaming import answer_heads
from scgikit.connection.sockets import timeval
from scgikit.protocol import DEFAULT_MAX_HEADER_SIZE, encode_request, parse_head_pure

pytestmark = pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)

CORPUS = Path(__file__).parent / "corpus"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(parse, *args, **kwargs):
    """What a call comes to: its result, or the exception's type, message and status."""
    try:
        return "returned", parse(*args, **kwargs)
    except Exception as exc:  # any: the two must fail alike, whatever the failure
        return "raised", type(exc), str(exc), getattr(exc, "status", None)


def assert_same(*args, **kwargs):
    c = outcome(c_parse_head(), *args, **kwargs)
    pure = outcome(parse_head_pure, *args, **kwargs)
    assert c == pure, args
    return c


# --- the same results --------------------------------------------------------------------------

latin1 = st.characters(min_codepoint=0, max_codepoint=255)
# Names that matter to the rules, often repeated, beside arbitrary ones (empty and NUL included).
names = st.one_of(
    st.sampled_from(["CONTENT_LENGTH", "SCGI", "HTTP_COOKIE", "HTTP_ACCEPT", "REQUEST_METHOD",
                     "PATH_INFO", ""]),
    st.text(latin1, max_size=12),
)
values = st.one_of(st.sampled_from(["1", "0", "2", "01", "007", "12", "\xb2", "", " 1",
                                    "9" * 19, "9" * 30]),
                   st.text(latin1, max_size=30))
pairs = st.lists(st.tuples(names, values), max_size=10)
limits = st.one_of(st.just(DEFAULT_MAX_HEADER_SIZE), st.integers(min_value=0, max_value=400))
edits = st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete", "cut"]),
                           st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                 max_size=3)


def edited(data: bytes, changes) -> bytes:
    out = bytearray(data)
    for kind, where, byte in changes:
        at = where % (len(out) + 1)
        if kind == "insert":
            out[at:at] = bytes([byte])
        elif kind == "cut":
            del out[at:]
        elif out and at < len(out):
            if kind == "replace":
                out[at] = byte
            else:
                del out[at]
    return bytes(out)


@SETTINGS
@given(st.booleans(), pairs, st.binary(max_size=20), edits, limits, st.booleans())
def test_c_and_pure_agree_on_random_and_mutated_heads(valid_start, extra, tail, changes, limit,
                                                      as_bytearray):
    start = [("CONTENT_LENGTH", str(len(tail))), ("SCGI", "1")] if valid_start else []
    data = edited(scgi_head(start + extra) + tail, changes)
    assert_same(bytearray(data) if as_bytearray else data, limit)


@SETTINGS
@given(st.dictionaries(st.text(latin1.filter(lambda c: c != "\0"), min_size=1, max_size=20),
                       st.text(latin1.filter(lambda c: c != "\0"), max_size=40), max_size=30),
       st.binary(max_size=50), st.integers(min_value=0, max_value=2000))
def test_c_and_pure_agree_on_valid_heads_and_every_cut(environ, body, cut):
    data = encode_request(environ, len(body)) + body
    result = assert_same(data)
    assert result[0] == "returned" and result[1] is not None
    assert_same(data[: cut % (len(data) + 1)])


@SETTINGS
@given(st.binary(max_size=300), limits)
def test_c_and_pure_agree_on_arbitrary_bytes(data, limit):
    assert_same(data, limit)


@pytest.mark.parametrize("prefix", [b"", b"1", b"12", b"0", b"00", b"05", b"G", b"GET ",
                                    b"PRI * HTTP/2", b"PROXY TCP4 ", b"123456789012345678901",
                                    b"99999999999999999999:", b"9999999999999999999:",
                                    b"999999999999999999:", b":", b"1:", b"1:x", b"1:x,"])
def test_c_and_pure_agree_on_odd_length_prefixes(prefix):
    for limit in (0, 1, 4096, DEFAULT_MAX_HEADER_SIZE, 10**18, 10**19, 2**63 - 1):
        assert_same(prefix, limit)


def corpus_cases():
    manifest = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    limit = int(manifest["server"]["args"][manifest["server"]["args"].index(
        "--max-header-size") + 1])
    return [(path, limit) for path in sorted((CORPUS / "requests").iterdir())]


@pytest.mark.parametrize("path,limit", corpus_cases(), ids=lambda v: getattr(v, "stem", ""))
def test_c_and_pure_agree_on_every_corpus_request_and_its_prefixes(path, limit):
    data = path.read_bytes()
    for size in (limit, DEFAULT_MAX_HEADER_SIZE):
        assert_same(data, size)
        assert_same(bytearray(data), size)
    head = data[: limit + 10]  # every prefix as far as a head can reach, byte by byte
    for end in range(len(head)):
        assert_same(head[:end], limit)


@pytest.mark.parametrize("args,kwargs", [
    ((), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,",), {"max_header_size": 10}),
    ((), {"data": b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,"}),
    ((b"x", 1, 2), {}),
    ((b"x",), {"limit": 1}),
    ((b"x", 1), {"max_header_size": 1}),
    (("24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,",), {}),
    ((memoryview(b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,"),), {}),
    ((None,), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,", 100.0), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,", True), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,", -1), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,", 2**80), {}),
    ((b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,", "100"), {}),
])
def test_c_and_pure_agree_on_odd_arguments(args, kwargs):
    assert_same(*args, **kwargs)


def test_a_typical_nginx_head_parses_alike():
    data = nginx_head(b"hello")
    result = assert_same(data, 4096)
    environ, length, consumed = result[1]
    assert len(environ) == 27 and (length, data[consumed:]) == (5, b"hello")


def test_the_c_function_gives_interned_names_which_lookups_by_constant_find_by_identity():
    """Every name is the interned str: a lookup with a constant of the same text (the
    C scope's and environ's own names, any literal in Python code) meets that very
    object first, and compares no bytes."""
    parse = c_parse_head()
    environ, _, _ = parse(nginx_head(b"hello"), 4096)
    for name in environ:
        assert name is sys.intern(name)
    new_name = "HTTP_X_NEVER_SEEN_" + "Q" * 9  # made at run time, not a constant
    fresh = scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1"), (new_name, "")])
    assert list(parse(fresh, 4096)[0])[2] is sys.intern(new_name)


def test_heads_in_a_row_parse_alike_whatever_the_c_function_kept_from_the_last():
    """The C function reuses the names (and a name's last value) of the heads before:
    a head must parse the same whatever came before it, whether its names and values
    are the last ones, differ, share a cache slot, or are too long to keep."""
    base = {"CONTENT_LENGTH": "0", "SCGI": "1", "REQUEST_METHOD": "GET",
            "SERVER_NAME": "localhost", "HTTP_COOKIE": "a=1"}
    variants = [
        {},
        {"REQUEST_METHOD": "POST"},
        {"REQUEST_METHOD": "GET", "REMOTE_PORT": "5555"},
        {"REQUEST_METHOD": "PUT", "REMOTE_PORT": "5556"},  # as long as the last ones
        {"HTTP_COOKIE": "b=" + "x" * 300},  # longer than the C function keeps
        {"HTTP_COOKIE": "b=" + "x" * 300},
        {"HTTP_COOKIE": "a=1", "HTTP_X_\xe9": "caf\xe9"},  # Latin-1 beyond ASCII
        # Names of the same length and the same first, middle and last bytes: one slot.
        {"HTTP_XAY": "1", "HTTP_XBY": "2"},
        {"HTTP_XBY": "2", "HTTP_XAY": "1"},
        {"SERVER_NAME": ""},
        {"SERVER_NAME": "localhost"},
    ]
    parsed = []
    for _ in range(3):
        for extra in variants:
            environ = {**base, **extra}
            data = scgi_head(list(environ.items()))
            result = assert_same(data, 4096)
            assert result[1][0] == environ
            parsed.append(result[1][0])
    # What an earlier result holds is not changed by later calls.
    assert parsed[0] == base and parsed[4]["HTTP_COOKIE"] == "b=" + "x" * 300


# --- the C path is taken, and holds nothing afterwards ------------------------------------------

@pytest.fixture
def fallback_calls():
    """Make the C function's fallback a recording wrapper of the pure one, for one test."""
    calls = []

    def recording(*args, **kwargs):
        calls.append(args)
        return parse_head_pure(*args, **kwargs)

    _speedups.setup(recording, DEFAULT_MAX_HEADER_SIZE)
    yield calls
    _speedups.setup(parse_head_pure, DEFAULT_MAX_HEADER_SIZE)


def test_the_c_function_parses_well_formed_heads_itself(fallback_calls):
    head = nginx_head()
    assert _speedups.parse_head(head, 4096) == parse_head_pure(head, 4096)
    assert _speedups.parse_head(bytearray(head + b"body")) is not None
    assert _speedups.parse_head(head[:-1], 4096) is None  # partial, once the length is read
    assert fallback_calls == []


@pytest.mark.parametrize("data", [
    scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1"), ("HTTP_COOKIE", "a"), ("HTTP_COOKIE", "b")]),
    scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "2")]),
    netstring(b""),
    b"12",
    b"GET / HTTP/1.1\r\n",
])
def test_the_c_function_hands_anything_unusual_to_the_pure_one(fallback_calls, data):
    outcome(_speedups.parse_head, data, 4096)
    assert fallback_calls == [(data, 4096)]


CASES = {
    "parsed": nginx_head(),
    "partial": nginx_head()[:100],
    "merged": scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1"), ("HTTP_A", "1"), ("HTTP_A", "2")]),
    "refused": scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "2")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bytearray_can_be_resized_after_every_kind_of_call(case):
    data = bytearray(CASES[case])
    outcome(c_parse_head(), data, 4096)
    data += b"more"  # a buffer still held would make this raise BufferError
    del data[:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_reference_is_kept_or_leaked_by_any_kind_of_call(case):
    parse = c_parse_head()
    data = CASES[case]
    for _ in range(100):  # warm up caches (the exception's traceback frames, interned strings)
        outcome(parse, data, 4096)
    refs = sys.getrefcount(data), sys.getrefcount(parse_head_pure)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20000):
            outcome(parse, data, 4096)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (sys.getrefcount(data), sys.getrefcount(parse_head_pure)) == refs
    # One dict or string kept per call would be megabytes; allow the allocator's noise.
    assert grown < 64 * 1024, f"{grown} bytes more after 20000 calls"


# --- the choice at import ------------------------------------------------------------------------

def python(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=child_env(**env), check=True)
    return result.stdout.strip()


def test_the_c_function_is_chosen_at_import_unless_scgikit_pure_is_set():
    code = ("import scgikit.protocol as p; "
            "print(p.ACCELERATED, p.parse_head is p.parse_head_pure, p.parse_head.__module__)")
    assert python(code, SCGIKIT_PURE="") == "True False scgikit._speedups"
    assert python(code, SCGIKIT_PURE="0") == "True False scgikit._speedups"
    assert python(code, SCGIKIT_PURE="1") == "False True scgikit.protocol"


def test_version_says_whether_the_c_accelerator_is_on():
    code = "import sys, scgikit.cli; sys.exit(scgikit.cli.main(['--version']))"
    assert python(code, SCGIKIT_PURE="").splitlines()[1:] == ["C accelerator: on"]
    assert python(code, SCGIKIT_PURE="1").splitlines()[1:] == ["C accelerator: off (pure Python)"]


@pytest.mark.parametrize("pure,said", [("", "on"), ("1", "off (pure Python)")],
                         ids=["c", "pure"])
def test_the_server_logs_which_parser_it_runs_and_serves_with_it(transport, pure, said):
    server = ServerProcess.scgikit("wsgi_apps:echo_hash", "--workers", "1", bind=[transport],
                                   env=child_env(SCGIKIT_PURE=pure)).start()
    try:
        server.wait_for_log(re.escape(f"C accelerator: {said}") + "$")
        answer = request(server.address, "/x", method="POST", body=b"abc")
        assert answer.status == 200 and b'"size": 3' in answer.body
    finally:
        server.stop()


def test_the_c_signature_is_the_pure_one():
    c, pure = (inspect.signature(f) for f in (_speedups.parse_head, parse_head_pure))
    assert [(p.name, p.kind, p.default) for p in c.parameters.values()] == [
        (p.name, p.kind, p.default) for p in pure.parameters.values()]


# --- the build -----------------------------------------------------------------------------------

def build_copy(tmp_path: Path, **env: str) -> tuple[str, str]:
    """Build a copy of this tree with setuptools (as ``pip install`` does, without a network)
    into a folder of its own; return whether that package's parser is the C one, and the
    build's output."""
    root = Path(__file__).parent.parent
    files = subprocess.run(["git", "ls-files", "pyproject.toml", "setup.py", "README.md", "src"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    tree, target = tmp_path / "tree", tmp_path / "target"
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes((root / name).read_bytes())
    build = subprocess.run(
        [sys.executable, "setup.py", "build", "--build-lib", str(target),
         "--build-temp", str(tmp_path / "temp")],
        cwd=tree, capture_output=True, text=True, timeout=300, env={**child_env(), **env})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    said = subprocess.run(
        [sys.executable, "-c", "import scgikit.protocol as p; print(p.__file__, p.ACCELERATED)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
        env={**child_env(), "PYTHONPATH": str(target), "SCGIKIT_PURE": ""}).stdout.split()
    assert said[0] == str(target / "scgikit" / "protocol.py")
    return said[1], build.stdout + build.stderr


def test_the_build_makes_the_extension_where_a_compiler_and_the_headers_are(tmp_path):
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not (shutil.which(sysconfig.get_config_var("CC").split()[0]) and headers.exists()):
        pytest.skip("no C compiler or no Python headers here")
    said, _ = build_copy(tmp_path)
    assert said == "True"


def test_the_build_without_a_compiler_gives_the_pure_package(tmp_path):
    said, output = build_copy(tmp_path, CC="/nonexistent/cc")
    assert said == "False"
    assert 'building extension "scgikit._speedups" failed' in output


# --- the WSGI environ: the C builder and the pure function give the same dict ------------------

NGINX = dict(parse_head_pure(nginx_head(), 4096)[0])
APACHE = {"CONTENT_LENGTH": "0", "SCGI": "1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app/x",
          "REQUEST_URI": "/app/x?y=1", "QUERY_STRING": "y=1", "SERVER_SOFTWARE": "Apache/2.4.62",
          "HTTP_COOKIE": "a=1, b=2", "HTTPS": "1"}
LIGHTTPD = {"CONTENT_LENGTH": "3", "SCGI": "1", "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/app",
            "PATH_INFO": "/x y", "REQUEST_URI": "/app/x%20y", "HTTP_CONTENT_TYPE": "text/plain",
            "HTTP_CONTENT_LENGTH": "3", "HTTP_TRANSFER_ENCODING": "chunked"}


def plain(**variables: str) -> dict[str, str]:
    return {"CONTENT_LENGTH": "0", "SCGI": "1", **variables}


# name: (variables, script_name, what the environ must hold beside the pure function's result)
ENVIRONS = {
    "nginx": (NGINX, "", {"PATH_INFO": "/articles/2024/scgi", "SCRIPT_NAME": "",
                          "wsgi.url_scheme": "https"}),
    "nginx_under_a_script_name": (NGINX, "/articles", {"SCRIPT_NAME": "/articles",
                                                        "PATH_INFO": "/2024/scgi"}),
    "script_name_equal_to_the_path": (plain(REQUEST_URI="/app?x"), "/app",
                                      {"SCRIPT_NAME": "/app", "PATH_INFO": ""}),
    "script_name_not_a_path_prefix": (plain(REQUEST_URI="/application/x"), "/app",
                                      {"SCRIPT_NAME": "/app", "PATH_INFO": "/application/x"}),
    "script_name_elsewhere": (plain(REQUEST_URI="/x/app"), "/app", {"PATH_INFO": "/x/app"}),
    "apache_with_script_name": (APACHE, "", {"SCRIPT_NAME": "", "PATH_INFO": "/app/x",
                                             "HTTP_COOKIE": "a=1; b=2",
                                             "wsgi.url_scheme": "https"}),
    "lighttpd_with_path_info": (LIGHTTPD, "/ignored", {
        "SCRIPT_NAME": "/app", "PATH_INFO": "/x y", "CONTENT_TYPE": "text/plain"}),
    "percent_encoded": (plain(REQUEST_URI="/caf%C3%A9/a%2Fb?q=%20"), "",
                        {"PATH_INFO": "/caf\xc3\xa9/a/b"}),
    "percent_encoded_under_a_script_name": (plain(REQUEST_URI="/app/%7Ex"), "/app",
                                            {"PATH_INFO": "/~x"}),
    "latin1_path": (plain(REQUEST_URI="/caf\xe9"), "", {"PATH_INFO": "/caf\xe9"}),
    "absolute_form": (plain(REQUEST_URI="http://example.com/a/b?c"), "",
                      {"PATH_INFO": "/a/b"}),
    "absolute_form_without_a_path": (plain(REQUEST_URI="http://example.com"), "",
                                     {"PATH_INFO": "/"}),
    "document_uri_only": (plain(DOCUMENT_URI="/doc"), "", {"PATH_INFO": "/doc"}),
    "empty_request_uri": (plain(REQUEST_URI="", DOCUMENT_URI="/doc"), "", {"PATH_INFO": "/doc"}),
    "no_uri": (plain(), "/app", {"PATH_INFO": "/"}),
    "query_only": (plain(REQUEST_URI="?a=b"), "", {"PATH_INFO": "/"}),
    "https_on": (plain(HTTPS="on"), "", {"wsgi.url_scheme": "https"}),
    "https_1": (plain(HTTPS="1"), "", {"wsgi.url_scheme": "https"}),
    "https_off": (plain(HTTPS="off"), "", {"wsgi.url_scheme": "http"}),
    "request_scheme_https": (plain(REQUEST_SCHEME="https"), "", {"wsgi.url_scheme": "https"}),
    "request_scheme_http": (plain(REQUEST_SCHEME="http"), "", {"wsgi.url_scheme": "http"}),
    "cookie_with_comma_from_apache": (plain(HTTP_COOKIE="a=1, b=2",
                                            SERVER_SOFTWARE="Apache/2.4"), "",
                                      {"HTTP_COOKIE": "a=1; b=2"}),
    "cookie_with_comma_from_nginx": (plain(HTTP_COOKIE="list=a, b",
                                           SERVER_SOFTWARE="nginx/1.22"), "",
                                     {"HTTP_COOKIE": "list=a, b"}),
    "cookie_without_comma": (plain(HTTP_COOKIE="a=1; b=2", SERVER_SOFTWARE="Apache"), "",
                             {"HTTP_COOKIE": "a=1; b=2"}),
    "http_content_type_alone": (plain(HTTP_CONTENT_TYPE="text/html"), "",
                                {"CONTENT_TYPE": "text/html"}),
    "http_content_type_beside_content_type": (plain(CONTENT_TYPE="a/b", HTTP_CONTENT_TYPE="c/d"),
                                              "", {"CONTENT_TYPE": "a/b"}),
    "framing_headers_dropped": (plain(HTTP_TRANSFER_ENCODING="chunked",
                                      HTTP_CONTENT_LENGTH="10"), "", {}),
}
DROPPED = ("HTTP_TRANSFER_ENCODING", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE")


@pytest.fixture(params=["pure", "c"])
def build_environ(request):
    """Each implementation of the environ build, whichever the import chose."""
    return wsgi.environ_pure if request.param == "pure" else wsgi.c_pieces(_speedups)[0]


def base(script_name: str = "") -> dict:
    return wsgi.WSGIAdapter(lambda e, s: [], script_name, "localhost", "80").base


@pytest.mark.parametrize("case", sorted(ENVIRONS))
def test_the_environ_is_the_pure_one_key_for_key_and_in_order(build_environ, case):
    variables, script_name, expected = ENVIRONS[case]
    body = io.BytesIO(b"abc")
    before = dict(variables)
    environ = build_environ(base(script_name), variables, body, script_name)
    pure = wsgi.environ_pure(base(script_name), variables, body, script_name)
    assert list(environ.items()) == list(pure.items())
    assert {name: environ[name] for name in expected} == expected
    assert environ["wsgi.input"] is body and not any(name in environ for name in DROPPED)
    assert variables == before


def test_the_environ_is_a_new_dict_that_leaves_the_base_alone(build_environ):
    shared = base()
    saved = dict(shared)
    environ = build_environ(shared, NGINX, None, "")
    assert environ is not shared and shared == saved


class Variables(dict):
    """Not a plain dict: the C builder hands it to the pure function."""


@pytest.mark.parametrize("variables", [
    Variables(REQUEST_URI="/a"),
    {"REQUEST_URI": Variables()},  # not a str: split_path's business (it raises)
    {"HTTPS": 1, "HTTP_COOKIE": ["a, b", ", "]},  # odd values, compared as Python does
])
def test_odd_arguments_give_what_the_pure_function_gives(build_environ, variables):
    assert outcome(build_environ, base(), variables, None, "") == outcome(
        wsgi.environ_pure, base(), variables, None, "")


def test_a_script_name_that_is_not_a_str_goes_to_split_path(build_environ):
    with pytest.raises(TypeError):
        build_environ(base(), plain(REQUEST_URI="/a"), None, b"/a")


@pytest.fixture
def split_path_calls(monkeypatch):
    """Make the C builder's split_path a recording wrapper of the real one, for one test."""
    calls = []
    split_path = wsgi.split_path

    def recording(variables, script_name):
        calls.append(variables.get("REQUEST_URI"))
        return split_path(variables, script_name)

    monkeypatch.setattr(wsgi, "split_path", recording)
    wsgi.c_pieces(_speedups)
    yield calls
    monkeypatch.undo()
    wsgi.c_pieces(_speedups)


def test_the_c_builder_splits_plain_paths_itself_and_hands_the_rest_to_split_path(
        split_path_calls):
    for uri in ("/a/b?c", "/", "/app", "/app/x", "/application", "/caf\xe9"):
        _speedups.wsgi_environ(base("/app"), plain(REQUEST_URI=uri), None, "/app")
    assert split_path_calls == []
    for uri in ("/a%20b", "http://h/a", "*"):
        _speedups.wsgi_environ(base(), plain(REQUEST_URI=uri), None, "")
    assert split_path_calls == ["/a%20b", "http://h/a", "*"]


@pytest.mark.parametrize("case", ["nginx", "apache_with_script_name", "lighttpd_with_path_info",
                                  "percent_encoded", "http_content_type_alone"])
def test_the_c_environ_keeps_or_leaks_no_reference(case):
    build = wsgi.c_pieces(_speedups)[0]
    variables, script_name, _ = ENVIRONS[case]
    shared, body = base(script_name), io.BytesIO()
    leak_check(lambda: build(shared, variables, body, script_name),
               shared, variables, body, script_name, *variables.values())


# --- the WSGI exchange: the C type and the pure class answer alike, over real sockets ----------

HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "5")]


def adapter(app=None, timeout=None):
    return wsgi.WSGIAdapter(app or (lambda environ, start_response: []), "", "localhost", "80",
                            timeout)


def streaming_head(status, headers):
    """The head of an answer that streams (with X-Accel-Buffering: no, apps/streaming.py)."""
    return answer_heads(wsgi.encode_head(status, headers), headers, False)[0]


@pytest.fixture(params=["pure", "c"])
def new_exchange(request):
    """Each exchange class, whichever the import chose."""
    return wsgi._Exchange if request.param == "pure" else wsgi.c_pieces(_speedups)[1]


@pytest.fixture
def packets():
    """A SOCK_SEQPACKET pair: each send arrives as one record, so sends can be counted."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.fixture
def stream():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def records(sock: socket.socket) -> list[bytes]:
    """Every record waiting on a SOCK_SEQPACKET socket."""
    sock.setblocking(False)
    found = []
    while True:
        try:
            found.append(sock.recv(1 << 20))
        except BlockingIOError:
            return found


def test_the_head_goes_with_the_first_non_empty_chunk_in_one_send(new_exchange, packets):
    exchange = new_exchange(packets[0], adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    exchange.respond([b"", b"hello", b"", b"world"])
    head = wsgi.encode_head("200 OK", HEADERS)
    assert records(packets[1]) == [head + b"hello", b"world"]
    assert (exchange.sent, exchange.status, exchange.head) == (len(head) + 10, "200 OK", None)


def test_a_response_without_body_chunks_sends_the_head_alone_at_finish(new_exchange, packets):
    exchange = new_exchange(packets[0], adapter(), None)
    exchange.start_response("204 No Content", [])
    exchange.respond(iter([b"", bytearray()]))
    exchange.finish()  # again: nothing more
    assert records(packets[1]) == [streaming_head("204 No Content", [])]


@pytest.mark.parametrize("result, body", [
    ([b"hello"], b"hello"), ((b"hello",), b"hello"), ([bytearray(b"hi")], b"hi"),
    ([b""], b""), ([""], b""), ([None], b""), ([b"", b"hello", b""], b"hello"),
], ids=repr)
def test_a_closing_exchange_sends_a_list_answer_with_its_head_in_one_send(new_exchange, packets,
                                                                          result, body):
    exchange = new_exchange(packets[0], adapter(), None)
    exchange.closing = True  # the body came whole: the close follows the answer
    exchange.start_response("200 OK", HEADERS)
    exchange.respond(result)
    head = wsgi.encode_head("200 OK", HEADERS)
    assert records(packets[1]) == [head + body]
    assert (exchange.sent, exchange.head) == (len(head) + len(body), None)


@pytest.mark.parametrize("chunk", ["text", 1], ids=repr)
def test_a_closing_exchange_refuses_a_one_chunk_answer_that_is_not_bytes(new_exchange, stream,
                                                                          chunk):
    exchange = new_exchange(stream[0], adapter(), None)
    exchange.closing = True
    exchange.start_response("200 OK", HEADERS)
    with pytest.raises(TypeError, match="^WSGI body chunks must be bytes"):
        exchange.respond([chunk])
    assert exchange.sent == 0 and exchange.head is not None


def test_a_big_first_chunk_goes_beside_the_head_in_one_send(new_exchange, packets):
    big = bytes(range(256)) * 256  # 64 KiB, more than _SMALL_CHUNK
    exchange = new_exchange(packets[0], adapter(), None)
    write = exchange.start_response("200 OK", HEADERS)
    write(bytearray(big))
    write(b"!")
    head = wsgi.encode_head("200 OK", HEADERS)
    assert records(packets[1]) == [head + big, b"!"]
    assert exchange.sent == len(head) + len(big) + 1


def test_a_response_larger_than_the_socket_buffer_arrives_whole(new_exchange, stream):
    ours, theirs = stream
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    chunks = [bytes([n]) * (300 * 1024 + n) for n in range(8)] + [b"x" * 100] * 50
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(read_all(theirs)))
    reader.start()
    exchange = new_exchange(ours, adapter(), 5.0)
    exchange.start_response("200 OK", HEADERS)
    exchange.respond(chunks)
    ours.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == wsgi.encode_head("200 OK", HEADERS) + b"".join(chunks)
    assert exchange.sent == len(received)


def test_once_a_send_waited_the_next_chunks_are_sent_with_waiting_sends(new_exchange, stream):
    ours, theirs = stream
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    chunks = [bytes([n]) * (1 << 20) for n in range(4)]
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(read_all(theirs)))
    reader.start()
    exchange = new_exchange(ours, adapter(), 5.0)
    exchange.start_response("200 OK", HEADERS)
    exchange.write(b"small")
    assert not exchange.waited  # it fitted: the next send is tried without waiting
    for chunk in chunks:
        exchange.write(chunk)
        assert exchange.waited
    ours.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == wsgi.encode_head("200 OK", HEADERS) + b"small" + b"".join(chunks)
    assert exchange.sent == len(received)


def read_exactly(sock: socket.socket, count: int) -> None:
    while count > 0:
        block = sock.recv(min(count, 1 << 16))
        assert block
        count -= len(block)


@pytest.mark.parametrize("peer", ["stalls", "closes"])
def test_a_chunk_after_a_send_that_waited_ends_in_client_gone_when_the_peer_stalls_or_closes(
        new_exchange, stream, peer):
    ours, theirs = stream
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    head = wsgi.encode_head("200 OK", HEADERS)
    first = b"1" * (1 << 20)
    # The peer reads the head and the first chunk, then stops reading (or closes).
    reader = threading.Thread(target=read_exactly, args=(theirs, len(head) + len(first)))
    reader.start()
    exchange = new_exchange(ours, adapter(), 0.2)
    exchange.start_response("200 OK", HEADERS)
    exchange.write(first)
    reader.join(10)
    assert exchange.waited and not reader.is_alive()
    if peer == "closes":
        theirs.close()
    with pytest.raises(wsgi.ClientGone,
                       match="timed out" if peer == "stalls" else r"Broken pipe|reset by peer"):
        exchange.write(b"2" * (4 << 20))
    assert exchange.sent == len(head) + len(first)


def read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while block := sock.recv(1 << 16):
        time.sleep(0.001)  # a slow reader: the sender finds the buffer full, again and again
        data += block
    return bytes(data)


@pytest.mark.parametrize("size", [10, 100 * 1024], ids=["small", "big"])
def test_a_send_to_a_closed_peer_raises_client_gone(new_exchange, stream, size):
    ours, theirs = stream
    theirs.close()
    exchange = new_exchange(ours, adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    with pytest.raises(wsgi.ClientGone, match=r"^\[Errno 32\] Broken pipe$") as raised:
        exchange.write(b"x" * size)
    assert raised.value.__suppress_context__ and isinstance(raised.value.__context__, OSError)
    assert (exchange.sent, exchange.head) == (0, None)


def test_a_send_that_times_out_raises_client_gone(new_exchange, stream):
    ours, theirs = stream  # nobody reads theirs
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    exchange = new_exchange(ours, adapter(), 0.2)
    exchange.start_response("200 OK", HEADERS)
    armed = timeval(0.2)
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, len(armed)) != armed
    # "timed out" comes only from the socket's own timeout, armed for the rest of the send
    # as the kernel's SO_SNDTIMEO (the connection stays blocking: one send, no poll).
    with pytest.raises(wsgi.ClientGone, match="timed out"):
        exchange.respond([b"x" * (4 << 20)])
    assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, len(armed)) == armed
    assert ours.gettimeout() is None


def test_start_response_twice_without_exc_info_raises_assertion_error(new_exchange, stream):
    exchange = new_exchange(stream[0], adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    with pytest.raises(AssertionError, match="^start_response called a second time without "
                                             "exc_info$"):
        exchange.start_response("200 OK", HEADERS, None)


def test_write_before_start_response_raises_assertion_error(new_exchange, stream):
    exchange = new_exchange(stream[0], adapter(), None)
    with pytest.raises(AssertionError, match=r"^write\(\) called before start_response\(\)$"):
        exchange.write(b"x")
    with pytest.raises(AssertionError):
        exchange.respond([b"x"])


@pytest.mark.parametrize("chunk", ["text", 1, None, [b"x"]], ids=repr)
def test_a_chunk_that_is_not_bytes_raises_type_error(new_exchange, stream, chunk):
    exchange = new_exchange(stream[0], adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    expected = f"WSGI body chunks must be bytes, not {type(chunk).__name__}"
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        exchange.write(chunk)
    if chunk is not None:  # respond() skips empty chunks, None among them
        with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
            exchange.respond([chunk])
    assert exchange.sent == 0 and exchange.head is not None


def test_a_memoryview_chunk_is_sent_as_the_pure_write_sends_it(new_exchange, packets):
    exchange = new_exchange(packets[0], adapter(), None)
    exchange.start_response("200 OK", [])
    exchange.write(memoryview(b"abc"))
    assert records(packets[1]) == [streaming_head("200 OK", []) + b"abc"]


@pytest.mark.parametrize("status,headers,message", [
    ("200", [], None), ("20 OK", [], "invalid status '20 OK'"), (200, [], "invalid status 200"),
    ("200 OK", [("X", 1)], "header 'X': 1 is not a pair of str"),
    ("200 OK", [("X Y", "1")], "invalid header 'X Y': '1'"),
    ("200 OK", [("X", "a\r\nb")], "invalid header 'X': 'a\\r\\nb'"),
    ("200 OK", [("X", "\u20ac")], "headers of '200 OK' are not latin-1"),
])
def test_a_bad_status_or_header_raises_invalid_response(new_exchange, stream, status, headers,
                                                        message):
    exchange = new_exchange(stream[0], adapter(), None)
    if message is None:
        exchange.start_response(status, headers)
        return
    with pytest.raises(wsgi.InvalidResponse, match=f"^{re.escape(message)}$"):
        exchange.start_response(status, headers)
    assert (exchange.status, exchange.head) == (None, None)


def test_exc_info_replaces_the_head_until_something_is_sent(new_exchange, packets):
    exchange = new_exchange(packets[0], adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    try:
        raise KeyError("late")
    except KeyError:
        exchange.start_response("500 Oops", [], sys.exc_info())
    exchange.finish()
    assert records(packets[1]) == [streaming_head("500 Oops", [])]
    assert exchange.status == "500 Oops"


def test_exc_info_is_raised_again_once_something_was_sent(new_exchange, stream):
    exchange = new_exchange(stream[0], adapter(), None)
    exchange.start_response("200 OK", HEADERS)
    exchange.write(b"part")
    try:
        raise KeyError("late")
    except KeyError as exc:
        error, info = exc, sys.exc_info()
    with pytest.raises(KeyError) as raised:
        exchange.start_response("500 Oops", [], exc_info=info)
    assert raised.value is error


def test_a_repeated_head_is_taken_from_the_adapter_cache_until_it_changes(new_exchange, stream):
    shared = adapter()
    first = new_exchange(stream[0], shared, None)
    first.start_response("200 OK", list(HEADERS))
    cached = shared.last_head
    assert cached == ("200 OK", HEADERS, streaming_head("200 OK", HEADERS),
                      wsgi.encode_head("200 OK", HEADERS))
    second = new_exchange(stream[0], shared, None)
    second.start_response("200 OK", list(HEADERS))
    assert shared.last_head is cached
    assert second.head is cached[2] and second.whole_head is cached[3]
    third = new_exchange(stream[0], shared, None)
    third.start_response("200 OK", HEADERS[:1])
    assert shared.last_head == ("200 OK", HEADERS[:1], streaming_head("200 OK", HEADERS[:1]),
                                wsgi.encode_head("200 OK", HEADERS[:1]))
    assert third.head == shared.last_head[2] and third.head is not cached[2]
    fourth = new_exchange(stream[0], shared, None)
    fourth.start_response("404 Not Found", HEADERS[:1])
    assert fourth.head == streaming_head("404 Not Found", HEADERS[:1])


def test_the_attributes_read_and_write_as_the_pure_ones(new_exchange, stream):
    shared = adapter()
    exchange = new_exchange(stream[0], shared, 2.5)
    assert (exchange.sock, exchange.adapter, exchange.timeout) == (stream[0], shared, 2.5)
    assert (exchange.status, exchange.head, exchange.sent) == (None, None, 0)
    exchange.status, exchange.head, exchange.sent, exchange.timeout = "201 X", b"H", 7, None
    assert (exchange.status, exchange.head, exchange.sent, exchange.timeout) == (
        "201 X", b"H", 7, None)
    exchange.finish()
    assert stream[1].recv(10) == b"H" and exchange.sent == 8 and exchange.head is None


def test_sendfile_sends_the_head_then_the_file(new_exchange, stream, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    exchange = new_exchange(stream[0], adapter(), None)
    exchange.start_response("200 OK", [])
    with open(path, "rb") as file:
        file.seek(3)
        wsgi.answer_file(exchange, wsgi.FileWrapper(file))  # a file: known whole
    head = wsgi.encode_head("200 OK", [])
    assert stream[1].recv(100) == head + b"3456789" and exchange.sent == len(head) + 7


def test_the_c_exchange_writes_to_what_is_not_a_socket_with_the_pure_write(stream):
    c_exchange = wsgi.c_pieces(_speedups)[1]

    class Wrapped:
        def __init__(self, sock):
            self.sock = sock

        def send(self, data, flags=0):
            return self.sock.send(data, flags)

    exchange = c_exchange(Wrapped(stream[0]), adapter(), None)
    exchange.start_response("200 OK", [])
    exchange.respond([b"abc"])
    assert stream[1].recv(100) == wsgi.encode_head("200 OK", []) + b"abc"


def test_the_c_exchange_sends_itself_and_hands_python_only_what_did_not_fit(monkeypatch,
                                                                            stream):
    calls = []
    for name in ("_send_rest", "send_all", "_send_both", "encode_head"):
        real = getattr(wsgi, name)
        monkeypatch.setattr(wsgi, name, lambda *a, _real=real, _name=name: (
            calls.append(_name), _real(*a))[1])
    monkeypatch.setattr(wsgi._Exchange, "write", lambda *a: calls.append("pure write"))
    c_exchange = wsgi.c_pieces(_speedups)[1]
    try:
        ours, theirs = stream
        exchange = c_exchange(ours, adapter(), None)
        exchange.start_response("200 OK", HEADERS)
        exchange.respond([b"a" * 100, bytearray(b"b" * 100)])
        assert calls == ["encode_head"]
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        reader = threading.Thread(target=read_all, args=(theirs,))
        reader.start()
        exchange.write(b"c" * (1 << 20))
        ours.shutdown(socket.SHUT_WR)
        reader.join(10)
        assert calls == ["encode_head", "_send_rest"]
    finally:
        monkeypatch.undo()
        wsgi.c_pieces(_speedups)


# The adapter end to end, with each implementation put in place as the import would.
def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", environ["PATH_INFO"].encode("latin-1")]


def fails_late(environ, start_response):
    start_response("200 OK", [])
    yield b"part"
    raise RuntimeError("late")


def invalid(environ, start_response):
    start_response("200 OK", [("Bad Name", "x")])
    return [b"x"]


@pytest.mark.parametrize("app,answer", [
    (hello, ("200 OK", b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello /p")),
    (fails_late, ("200 OK", b"Status: 200 OK\r\nX-Accel-Buffering: no\r\n\r\npart")),
    (invalid, ("500", None)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_the_adapter_answers_alike_with_either_implementation(monkeypatch, stream, app, answer):
    outcomes = []
    for pieces in ((wsgi.environ_pure, wsgi._Exchange), wsgi.c_pieces(_speedups)):
        monkeypatch.setattr(wsgi, "build_environ", pieces[0])
        monkeypatch.setattr(wsgi, "new_exchange", pieces[1])
        status, sent = adapter(app)(stream[0], plain(REQUEST_URI="/p"), 0, io.BytesIO())
        outcomes.append((status, sent, stream[1].recv(1000)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == answer[0] and answer[1] in (None, outcomes[0][2])


@pytest.mark.parametrize("kind", ["cached", "encoded", "error"])
def test_the_c_exchange_keeps_or_leaks_no_reference(stream, kind):
    c_exchange = wsgi.c_pieces(_speedups)[1]
    ours, theirs = stream
    shared, chunk = adapter(), b"x" * 100
    status = "200 OK"
    headers = [("A", "b")]

    def exchange_once():
        if kind == "encoded":
            shared.last_head = (None, None, b"")
        exchange = c_exchange(ours, shared, None)
        exchange.start_response(status, headers)
        if kind == "error":
            outcome(exchange.write, "not bytes")
            outcome(exchange.start_response, status, headers)
        exchange.respond([chunk, chunk])
        theirs.recv(1 << 16)

    leak_check(exchange_once, shared, chunk, status, headers, ours)


# --- the ASGI request headers: the C header_pairs and the pure function give the same list -----

@pytest.fixture(params=["pure", "c"])
def header_pairs(request):
    """Each implementation of header_pairs, whichever the import chose."""
    return header_pairs_pure if request.param == "pure" else c_header_pairs(_speedups)


# The 19 variables nginx sends with Debian's scgi_params for a plain GET (as /hello in bench).
NGINX_GET = {"CONTENT_LENGTH": "0", "SCGI": "1", "REQUEST_METHOD": "GET", "REQUEST_URI": "/hello",
             "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
             "REMOTE_PORT": "5555", "SERVER_PORT": "80", "SERVER_NAME": "localhost",
             "DOCUMENT_URI": "/hello", "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "wrk",
             "SERVER_ADDR": "127.0.0.1", "REQUEST_SCHEME": "http",
             "DOCUMENT_ROOT": "/usr/share/nginx/html", "GATEWAY_INTERFACE": "CGI/1.1",
             "SERVER_SOFTWARE": "nginx/1.22.1", "CONTENT_TYPE": ""}

# name: (variables, the headers both implementations must give)
HEADER_SETS = {
    "nginx_get": (NGINX_GET, [(b"host", b"localhost"), (b"user-agent", b"wrk")]),
    "nginx_browser": (NGINX, [
        (b"host", b"example.com"), (b"user-agent", NGINX["HTTP_USER_AGENT"].encode()),
        (b"accept", NGINX["HTTP_ACCEPT"].encode()), (b"accept-language", b"en-GB,en;q=0.5"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"referer", b"https://example.com/articles/2024/"), (b"connection", b"keep-alive"),
        (b"cookie", b"session=6f1c2a9be34d47a8b0e1; theme=dark; consent=yes"),
        (b"upgrade-insecure-requests", b"1"), (b"sec-fetch-dest", b"document"),
        (b"sec-fetch-mode", b"navigate"), (b"sec-fetch-site", b"same-origin")]),
    "apache_cookie_lines_joined": (APACHE, [(b"cookie", b"a=1; b=2")]),
    "lighttpd_post": (LIGHTTPD, [(b"content-type", b"text/plain"), (b"content-length", b"3")]),
    "cookie_with_comma_from_nginx": (plain(HTTP_COOKIE="list=a, b", SERVER_SOFTWARE="nginx"),
                                     [(b"cookie", b"list=a, b")]),
    "cookie_with_comma_from_an_unnamed_front_end": (plain(HTTP_COOKIE="a, b"),
                                                 [(b"cookie", b"a, b")]),
    "cookie_with_comma_space_at_its_end_from_apache": (
        plain(SERVER_SOFTWARE="Apache", HTTP_A="1", HTTP_COOKIE="a=1,", HTTP_B="2,, "),
        [(b"a", b"1"), (b"cookie", b"a=1,"), (b"b", b"2,, ")]),
    "cookie_merged_in_its_place": (
        plain(HTTP_A="1", HTTP_COOKIE="x=1, y=2, z", HTTP_B="2", SERVER_SOFTWARE="Apache/2"),
        [(b"a", b"1"), (b"cookie", b"x=1; y=2; z"), (b"b", b"2")]),
    "empty_values": (plain(HTTP_X_EMPTY="", HTTP_COOKIE="", CONTENT_TYPE=""),
                     [(b"x-empty", b""), (b"cookie", b"")]),
    "get_without_a_body": (plain(REQUEST_METHOD="GET"), []),
    "post_with_content_length_0": (plain(REQUEST_METHOD="POST"), [(b"content-length", b"0")]),
    "put_without_content_length": ({"REQUEST_METHOD": "PUT"}, [(b"content-length", b"0")]),
    "patch": (plain(REQUEST_METHOD="PATCH"), [(b"content-length", b"0")]),
    "lower_case_post_is_not_post": (plain(REQUEST_METHOD="post"), []),
    "get_with_a_body": (plain(REQUEST_METHOD="GET", CONTENT_LENGTH="12"),
                        [(b"content-length", b"12")]),
    "content_type_before_http_content_type": (
        plain(CONTENT_TYPE="a/b", HTTP_CONTENT_TYPE="c/d"), [(b"content-type", b"a/b")]),
    "empty_content_type_gives_way": (plain(CONTENT_TYPE="", HTTP_CONTENT_TYPE="c/d"),
                                     [(b"content-type", b"c/d")]),
    "framing_headers_dropped": (plain(HTTP_TRANSFER_ENCODING="chunked", HTTP_CONTENT_LENGTH="10",
                                      HTTP_X="1"), [(b"x", b"1")]),
    "odd_names": (plain(HTTP_="empty name", **{"HTTP_x_Mixed9": "1", "HTTP_A-B": "2",
                                               "HTTP_COOKIES": "3", "http_lower": "4"}),
                  [(b"", b"empty name"), (b"x-mixed9", b"1"), (b"a-b", b"2"), (b"cookies", b"3")]),
    "latin1_values": (plain(HTTP_X="caf\xe9 \xff\x00\x7f", CONTENT_TYPE="t/\xe9"),
                      [(b"x", b"caf\xe9 \xff\x00\x7f"), (b"content-type", b"t/\xe9")]),
    # str.lower() lowers latin-1 letters too ("\xc0" to "\xe0"), not just ASCII ones.
    "latin1_letters_in_names": (plain(**{"HTTP_\xc0_\xde\xdf": "1", "HTTP_X\xd7": "2"}),
                                [(b"\xe0-\xfe\xdf", b"1"), (b"x\xd7", b"2")]),
    "no_variables": ({}, []),
}


@pytest.mark.parametrize("case", sorted(HEADER_SETS))
def test_the_headers_are_the_expected_ones_in_order(header_pairs, case):
    variables, expected = HEADER_SETS[case]
    before = list(variables.items())
    assert header_pairs(variables) == expected == header_pairs_pure(variables)
    assert list(variables.items()) == before


def parsed_corpus() -> list[dict[str, str]]:
    """The variables of every corpus request the protocol core accepts."""
    found = []
    for path in sorted((CORPUS / "requests").iterdir()):
        result = outcome(parse_head_pure, path.read_bytes(), DEFAULT_MAX_HEADER_SIZE)
        if result[0] == "returned" and result[1] is not None:
            found.append(result[1][0])
    return found


def test_the_c_headers_are_the_pure_ones_on_every_corpus_request():
    c, corpus = c_header_pairs(_speedups), parsed_corpus()
    assert len(corpus) > 20
    for variables in corpus:
        assert outcome(c, variables) == outcome(header_pairs_pure, variables), variables


wide = st.characters(max_codepoint=0x17F)  # latin-1 and some beyond
header_names = st.one_of(
    st.sampled_from(["HTTP_COOKIE", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
                     "HTTP_TRANSFER_ENCODING", "CONTENT_TYPE", "CONTENT_LENGTH", "REQUEST_METHOD",
                     "SERVER_SOFTWARE", "HTTP_", "HTTP", "http_host", "HTTP_HOST"]),
    st.text(wide, max_size=12).map(lambda tail: "HTTP_" + tail),
    st.text(wide, max_size=12),
)
header_values = st.one_of(
    st.sampled_from(["", "0", "00", "1", "POST", "PUT", "PATCH", "GET", "Apache/2.4",
                     "a=1, b=2", ", ", ",", " ,"]),
    st.text(latin1, max_size=20),
    st.text(wide, max_size=8),
)


@SETTINGS
@given(st.dictionaries(header_names, header_values, max_size=12))
def test_the_c_headers_are_the_pure_ones_on_random_variables(variables):
    assert outcome(c_header_pairs(_speedups), variables) == outcome(header_pairs_pure, variables)


@pytest.mark.parametrize("variables", [
    plain(HTTP_X="\u20ac"),
    plain(HTTP_A="1", HTTP_X="x\u0100", HTTP_B="2"),
    plain(HTTP_COOKIE="a, \U0001f36a", SERVER_SOFTWARE="Apache"),
    plain(CONTENT_TYPE="text/\u2603"),
    plain(HTTP_CONTENT_TYPE="text/\u2603"),
    plain(CONTENT_LENGTH="\u0661"),  # ARABIC-INDIC DIGIT ONE
    {"HTTP_\u0100": "1"},  # lower-cased to "\u0101": not latin-1 either
], ids=lambda v: ascii(list(v.items())[-1]))
def test_characters_beyond_latin1_raise_the_pure_unicode_error(header_pairs, variables):
    raised = outcome(header_pairs, variables)
    assert raised[:2] == ("raised", UnicodeEncodeError)
    assert raised == outcome(header_pairs_pure, variables)


@pytest.mark.parametrize("variables", [
    plain(REQUEST_METHOD="P\u014cST", HTTP_X="1"),
    plain(SERVER_SOFTWARE="\u20ac", HTTP_X="1"),
    {"X_\u20ac": "\u20ac", "HTTP_X": "1"},
], ids=["method", "software", "other_variable"])
def test_characters_beyond_latin1_outside_the_headers_are_no_error(header_pairs, variables):
    assert header_pairs(variables) == [(b"x", b"1")] == header_pairs_pure(variables)


class Text(str):
    """Not an exact str: the C function hands it to the pure one."""

    def lower(self):
        return "lowered"


ODD_ARGUMENTS = {
    "dict_subclass": ((Variables(HTTP_X="1"),), {}),
    "int_value": (({"HTTP_X": 1},), {}),
    "none_value": (({"HTTP_X": None, "CONTENT_TYPE": "a"},), {}),
    "int_name": (({1: "x", "HTTP_X": "1"},), {}),
    "bytes_name": (({b"HTTP_X": "1"},), {}),
    "str_subclass_value": (({"HTTP_X": Text("1")},), {}),
    "str_subclass_name": (({Text("HTTP_X"): "1"},), {}),
    "falsy_content_type": (({"CONTENT_TYPE": 0, "HTTP_CONTENT_TYPE": "a/b"},), {}),
    "int_content_length": (({"CONTENT_LENGTH": 0},), {}),
    "str_subclass_method": (({"REQUEST_METHOD": Text("POST")},), {}),
    "list_cookie_from_apache": (({"HTTP_COOKIE": ["a, b"], "SERVER_SOFTWARE": "Apache"},), {}),
    "no_argument": ((), {}),
    "two_arguments": (({}, {}), {}),
    "by_keyword": ((), {"variables": plain(HTTP_X="1")}),
    "unknown_keyword": ((), {"headers": {}}),
    "none": ((None,), {}),
    "list_of_pairs": (([("HTTP_X", "1")],), {}),
}


@pytest.mark.parametrize("case", sorted(ODD_ARGUMENTS))
def test_odd_arguments_give_what_the_pure_header_pairs_gives(header_pairs, case):
    args, kwargs = ODD_ARGUMENTS[case]
    assert outcome(header_pairs, *args, **kwargs) == outcome(header_pairs_pure, *args, **kwargs)


@pytest.fixture
def header_calls():
    """Make the C header_pairs' fallback and merge_cookie recording wrappers, for one test."""
    calls = []

    def recording_pure(variables):
        calls.append("header_pairs_pure")
        return header_pairs_pure(variables)

    def recording_merge(value, variables):
        calls.append(value)
        return merge_cookie(value, variables)

    _speedups.setup_headers(header_pairs_pure=recording_pure, merge_cookie=recording_merge)
    yield calls
    c_header_pairs(_speedups)


def test_the_c_header_pairs_builds_them_itself_and_merges_only_joined_cookies(
        header_calls):
    for variables in (NGINX_GET, NGINX, LIGHTTPD, plain(HTTP_COOKIE="a=1; b=2")):
        assert _speedups.header_pairs(variables) == header_pairs_pure(variables)
    assert header_calls == []
    assert _speedups.header_pairs(APACHE) == [(b"cookie", b"a=1; b=2")]
    assert header_calls == ["a=1, b=2"]


@pytest.mark.parametrize("variables", [
    Variables(), {"HTTP_X": 1}, {"HTTP_\xc0": "1"}, {"X_\xe9": "1"}, {"HTTP_X": "\u0100"},
    {"OTHER": "\u0100"},
], ids=ascii)
def test_the_c_header_pairs_hands_anything_unusual_to_the_pure_one(header_calls, variables):
    outcome(_speedups.header_pairs, variables)
    assert header_calls == ["header_pairs_pure"]


def test_the_c_header_pairs_signature_is_the_pure_one():
    c, pure = (inspect.signature(f) for f in (_speedups.header_pairs, header_pairs_pure))
    assert [(p.name, p.kind, p.default) for p in c.parameters.values()] == [
        (p.name, p.kind, p.default) for p in pure.parameters.values()]


def test_the_c_header_pairs_is_chosen_at_import_unless_scgikit_pure_is_set():
    code = ("import scgikit.apps.asgi as a, scgikit.apps.request as r; "
            "print(a.header_pairs is r.header_pairs, r.header_pairs is r.header_pairs_pure, "
            "r.header_pairs.__module__)")
    assert python(code, SCGIKIT_PURE="") == "True False scgikit._speedups"
    assert python(code, SCGIKIT_PURE="1") == "True True scgikit.apps.request"


@pytest.mark.parametrize("case", ["nginx_browser", "apache_cookie_lines_joined", "lighttpd_post",
                                  "latin1_letters_in_names", "beyond_latin1"])
def test_the_c_header_pairs_keeps_or_leaks_no_reference(case):
    build = c_header_pairs(_speedups)
    variables = plain(HTTP_A="1", HTTP_X="\u20ac") if case == "beyond_latin1" else (
        HEADER_SETS[case][0])
    leak_check(lambda: outcome(build, variables), variables, *variables, *variables.values(),
               header_pairs_pure, merge_cookie)


# --- the ASGI http scope: the C http_scope and the pure function give the same dict ------------

def c_http_scope():
    """The C ``http_scope``, ready even when SCGIKIT_PURE=1 kept the modules from setting it
    up (its headers are the C header_pairs', which setup_headers readies)."""
    c_header_pairs(_speedups)
    built = asgi.c_http_scope(_speedups)
    assert built is _speedups.http_scope
    return built


@pytest.fixture(params=["pure", "c"])
def http_scope(request):
    """Each implementation of http_scope, whichever the import chose."""
    return asgi.http_scope_pure if request.param == "pure" else c_http_scope()


SERVER = ("localhost", 80)
STATES = {"empty": {}, "lifespan": {"pool": ["connection"], "name": "app"}}


def ordered(value):
    """value with every dict made a list of its items, and every leaf paired with its type:
    equal only where the keys come in the same order and the types are the same."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    if isinstance(value, (list, tuple)):
        return type(value), [ordered(item) for item in value]
    return type(value), value


def scope_outcome(build, variables, script_name="", server=SERVER, state=None):
    """outcome() of one build, its result ordered()."""
    result = outcome(build, variables, script_name, server, {} if state is None else state)
    return ("returned", ordered(result[1])) if result[0] == "returned" else result


def assert_same_scope(build, variables, script_name="", server=SERVER, state=None):
    """build gives what http_scope_pure gives, key for key and in order, or raises alike."""
    before = list(variables.items()) if isinstance(variables, dict) else None
    got = scope_outcome(build, variables, script_name, server, state)
    assert got == scope_outcome(asgi.http_scope_pure, variables, script_name, server, state)
    if before is not None:
        assert list(variables.items()) == before
    return got


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("case", sorted(ENVIRONS))
def test_the_scope_is_the_pure_one_key_for_key_and_in_order_for_every_environ_case(
        http_scope, case, state):
    variables, script_name, _ = ENVIRONS[case]
    assert assert_same_scope(http_scope, variables, script_name, SERVER, STATES[state])[0] == (
        "returned")


@pytest.mark.parametrize("case", sorted(HEADER_SETS))
def test_the_scope_is_the_pure_one_for_every_header_set(http_scope, case):
    variables, headers = HEADER_SETS[case]
    result = assert_same_scope(http_scope, variables)
    assert result[0] == "returned" and http_scope(variables, "", SERVER, {})["headers"] == headers


def ports(name: str) -> dict[str, dict[str, str]]:
    """The cases of one port variable: missing, empty, digits, not digits, beyond ASCII."""
    values = {"empty": "", "0": "0", "65535": "65535", "leading_zeros": "007", "12a": "12a",
              "space": " 1", "signed": "+1", "negative": "-1", "18_digits": "9" * 18,
              "19_digits": "9" * 19, "superscript_two": "\xb2", "superscript_one": "\xb9",
              "latin1_letter": "\xe9", "digit_and_superscript": "1\xb2"}
    cases = {f"{name.lower()}_missing": {}}
    cases.update({f"{name.lower()}_{label}": {name: value} for label, value in values.items()})
    return cases


PEER = {"REMOTE_ADDR": "192.0.2.7", "SERVER_NAME": "example.org"}
# name: (variables, script_name)
SCOPES = {
    "nginx_get": (NGINX_GET, ""),
    "nginx_browser": (NGINX, ""),
    "absolute_form": (plain(REQUEST_URI="http://example.com/a/b?c=d"), ""),
    "absolute_form_without_a_path": (plain(REQUEST_URI="https://example.com"), ""),
    "absolute_form_query_only": (plain(REQUEST_URI="http://example.com?x"), ""),
    "question_mark_only": (plain(REQUEST_URI="?"), ""),
    "slash_and_question_mark_only": (plain(REQUEST_URI="/?"), ""),
    "query_without_a_path": (plain(REQUEST_URI="?a=b"), ""),
    "asterisk": (plain(REQUEST_URI="*"), ""),
    "no_request_uri_nor_document_uri": (plain(), ""),
    "empty_request_uri_and_document_uri": (plain(REQUEST_URI="", DOCUMENT_URI=""), ""),
    "document_uri_only": (plain(DOCUMENT_URI="/doc?x=1"), ""),
    "query_string_missing": (plain(REQUEST_URI="/a?b=c&d=%20"), ""),
    "query_string_missing_and_several_marks": (plain(REQUEST_URI="/a?b?c"), ""),
    "query_string_missing_and_target_ends_with_a_mark": (plain(REQUEST_URI="/a?"), ""),
    "query_string_missing_with_latin1": (plain(REQUEST_URI="/a?caf\xe9"), ""),
    "query_string_empty": (plain(REQUEST_URI="/a?b=c", QUERY_STRING=""), ""),
    "query_string_not_the_targets": (plain(REQUEST_URI="/a?b", QUERY_STRING="x=\xe9"), ""),
    "percent_encoded_path": (plain(REQUEST_URI="/a%2Fb/caf%C3%A9?q"), ""),
    "latin1_path": (plain(REQUEST_URI="/caf\xe9?x"), ""),
    "utf8_path_as_latin1": (plain(REQUEST_URI="/caf\xc3\xa9"), ""),
    "path_info": (plain(REQUEST_URI="/app/x", PATH_INFO="/x", SCRIPT_NAME="/app"), ""),
    "remote_addr_missing": (plain(REMOTE_PORT="5555"), ""),
    "remote_addr_empty": (plain(REMOTE_ADDR="", REMOTE_PORT="5555"), ""),
    "remote_addr_empty_and_port_beyond_ascii": (plain(REMOTE_ADDR="", REMOTE_PORT="\xb2"), ""),
    **{case: ({**PEER, **extra}, "") for case, extra in ports("REMOTE_PORT").items()},
    **{case: ({**PEER, **extra}, "") for case, extra in ports("SERVER_PORT").items()},
    "server_name_empty_with_server_addr": (plain(SERVER_NAME="", SERVER_ADDR="10.0.0.1"), ""),
    "server_name_missing_with_server_addr": (plain(SERVER_ADDR="10.0.0.1"), ""),
    "server_name_and_server_addr_empty": (plain(SERVER_NAME="", SERVER_ADDR=""), ""),
    **{f"server_protocol_{version}": (plain(SERVER_PROTOCOL=version), "")
       for version in [*asgi._HTTP_VERSIONS, "HTTP/0.9", "http/1.1", "HTTP/1.1 ", ""]},
    "https_on": (plain(HTTPS="on"), ""),
    "https_1": (plain(HTTPS="1"), ""),
    "https_off": (plain(HTTPS="off"), ""),
    "https_upper_case": (plain(HTTPS="ON"), ""),
    "https_off_with_request_scheme_https": (plain(HTTPS="off", REQUEST_SCHEME="https"), ""),
    "request_scheme_https": (plain(REQUEST_SCHEME="https"), ""),
    "request_scheme_http": (plain(REQUEST_SCHEME="http"), ""),
    "request_method_empty": (plain(REQUEST_METHOD=""), ""),
    "request_method_missing": ({"REQUEST_URI": "/"}, ""),
    "request_method_latin1": (plain(REQUEST_METHOD="G\xc9T"), ""),
    "apache_cookie_lines_joined": (APACHE, ""),
    "lighttpd_post": (LIGHTTPD, ""),
    "no_variables": ({}, ""),
    # Handed to the pure function: its result, or its exception.
    "int_value_read_by_the_scope": ({**PEER, "REMOTE_PORT": 5555}, ""),
    "int_value_read_by_no_one": (plain(REQUEST_URI="/a", X_COUNT=5), ""),
    "none_request_uri": (plain(REQUEST_URI=None), ""),
    "bytes_query_string": (plain(REQUEST_URI="/a", QUERY_STRING=b"x"), ""),
    "str_subclass_value": (plain(REQUEST_URI=Text("/a")), ""),
    "int_name": ({**plain(REQUEST_URI="/a"), 1: "x"}, ""),
    "beyond_latin1_header": (plain(REQUEST_URI="/a", HTTP_X="\u20ac"), ""),
    "beyond_latin1_path": (plain(REQUEST_URI="/\u20ac"), ""),
    "beyond_latin1_query": (plain(REQUEST_URI="/a?\u20ac"), ""),
    "beyond_latin1_address": (plain(REMOTE_ADDR="\u20ac"), ""),
    "latin1_name": (plain(REQUEST_URI="/a", **{"X_\xe9": "1"}), ""),
    "dict_subclass": (Variables(REQUEST_URI="/a?b", REMOTE_ADDR="::1"), ""),
    "mapping_proxy": (types.MappingProxyType(plain(REQUEST_URI="/a?b")), ""),
    "script_name": (plain(REQUEST_URI="/app/x?y"), "/app"),
    "script_name_equal_to_the_path": (plain(REQUEST_URI="/app"), "/app"),
    "script_name_elsewhere": (plain(REQUEST_URI="/x/app"), "/app"),
    "script_name_str_subclass": (plain(REQUEST_URI="/a"), Text("")),
    "script_name_bytes": (plain(REQUEST_URI="/a"), b"/a"),
    "script_name_none": (plain(REQUEST_URI="/a"), None),
}


@pytest.mark.parametrize("case", sorted(SCOPES))
def test_the_scope_is_the_pure_one_in_every_case(http_scope, case):
    variables, script_name = SCOPES[case]
    for state in STATES.values():
        assert_same_scope(http_scope, variables, script_name, SERVER, state)


@pytest.mark.parametrize("variables", [
    {**PEER, "REMOTE_PORT": "\xb2"}, {**PEER, "SERVER_PORT": "\xb2"},
    {**PEER, "SERVER_PORT": "1\xb9"}, {**PEER, "SERVER_PORT": "9" * 5000},
    {**PEER, "REMOTE_PORT": "9" * 19},
], ids=["remote_port_superscript", "server_port_superscript", "server_port_with_superscript",
        "server_port_too_long_for_int", "remote_port_of_19_digits"])
def test_a_port_that_is_not_a_plain_number_gives_the_default_not_an_error(http_scope,
                                                                          variables):
    # str.isdigit() takes "\xb2", which int() refuses, as it refuses 5000 digits: a front
    # end's odd port must not fail the request.
    assert assert_same_scope(http_scope, variables)[0] == "returned"
    scope = http_scope(variables, "", SERVER, {})
    assert scope["client"] == ("192.0.2.7", 0)
    assert scope["server"] == ("example.org", SERVER[1])


@pytest.mark.parametrize("case", sorted(["nginx_get", "percent_encoded_path", "script_name",
                                         "int_value_read_by_the_scope"]))
@pytest.mark.parametrize("server", [
    ("h", 8080), ("", 0), ("h", 2**80), ("h", "80"), ("h", True), (Text("h"), 1), ("h", 1.5),
    ["h", 80], ("h", 80, "x"), ("h",), (), None,
], ids=repr)
def test_any_server_gives_what_the_pure_function_gives(http_scope, case, server):
    variables, script_name = SCOPES[case]
    for bare in (variables, plain()):  # the server's name and port read, or not
        assert_same_scope(http_scope, bare, script_name, server)


class State(dict):
    """Not a plain dict: the C builder hands it to the pure function."""


@pytest.mark.parametrize("state", [State(a=1), None, [("a", 1)], types.MappingProxyType({})],
                         ids=repr)
def test_any_state_gives_what_the_pure_function_gives(http_scope, state):
    for variables in (NGINX_GET, plain(REQUEST_URI="/a%20b")):
        assert_same_scope(http_scope, variables, "", SERVER, state)


@pytest.mark.parametrize("args", [
    (), (NGINX_GET,), (NGINX_GET, "", SERVER), (NGINX_GET, "", SERVER, {}, None),
], ids=len)
def test_other_argument_counts_raise_the_pure_type_error(args):
    c = outcome(c_http_scope(), *args)
    assert c[:2] == ("raised", TypeError) and c == outcome(asgi.http_scope_pure, *args)


def test_the_c_http_scope_takes_the_pure_functions_arguments_by_position():
    c, pure = (inspect.signature(f) for f in (_speedups.http_scope, asgi.http_scope_pure))
    assert [p.name for p in c.parameters.values()] == [p.name for p in pure.parameters.values()]
    assert {p.kind for p in c.parameters.values()} == {inspect.Parameter.POSITIONAL_ONLY}


def test_the_c_scopes_are_the_pure_ones_on_every_corpus_request():
    """Variables as the C parse_head makes them (names not interned, values cached)."""
    build, corpus = c_http_scope(), parsed_corpus()
    parsed = [c_parse_head()(scgi_head(list(variables.items())), 2**20)[0]
              for variables in corpus]
    assert parsed == corpus and len(corpus) > 20
    for variables in corpus + parsed:
        assert_same_scope(build, variables)


scope_names = st.one_of(
    st.sampled_from(["REQUEST_URI", "DOCUMENT_URI", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_PORT",
                     "SERVER_PORT", "SERVER_NAME", "SERVER_ADDR", "SERVER_PROTOCOL", "HTTPS",
                     "REQUEST_SCHEME", "REQUEST_METHOD", "PATH_INFO", "SCRIPT_NAME",
                     "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_COOKIE", "HTTP_HOST",
                     "SERVER_SOFTWARE"]),
    st.text(latin1, max_size=12).map(lambda tail: "HTTP_" + tail),
    st.text(latin1, max_size=12),
)
scope_values = st.one_of(
    st.sampled_from(["", "/", "?", "/a?b", "/a?", "/a/b?c?d", "http://h/p?q", "http://h", "*",
                     "/a%20b", "/caf\xe9", "/a?caf\xe9", "on", "1", "off", "https", "0", "007",
                     "65535", "12a", "\xb2", "1\xb9", "9" * 18, "9" * 19, "HTTP/1.1", "HTTP/2",
                     "HTTP/0.9", "Apache/2.4", "a=1, b=2", "GET", "POST", "::1"]),
    st.text(latin1, max_size=20),
    st.text(latin1, max_size=20).map(lambda tail: "/" + tail),
)


@SETTINGS
@given(st.dictionaries(scope_names, scope_values, max_size=14),
       st.sampled_from(["", "", "", "/a", "/caf\xe9"]), st.sampled_from([{}, {"k": [1]}]))
def test_the_c_scope_is_the_pure_one_on_random_variables(variables, script_name, state):
    assert_same_scope(c_http_scope(), variables, script_name, SERVER, state)


def test_each_scope_has_new_dicts_and_lists_a_copy_of_the_state_and_the_variables_themselves(
        http_scope):
    state = {"pool": ["connection"]}
    first, second = (http_scope(NGINX_GET, "", SERVER, state) for _ in range(2))
    inner = [lambda s: s["asgi"], lambda s: s["headers"], lambda s: s["state"],
             lambda s: s["extensions"], lambda s: s["extensions"]["scgi"],
             lambda s: s["extensions"]["http.response.pathsend"]]
    for part in inner:
        assert part(first) == part(second) and part(first) is not part(second)
    assert first["state"] == state and first["state"] is not state
    assert first["state"]["pool"] is state["pool"]  # a shallow copy, as dict.copy() makes
    assert first["extensions"]["scgi"]["variables"] is NGINX_GET
    # An app changing its scope changes neither the next scope nor what it was made from.
    first["asgi"]["version"] = "2.0"
    first["headers"].append((b"x", b"1"))
    first["state"]["added"] = True
    first["extensions"]["scgi"]["added"] = True
    first["extensions"]["http.response.pathsend"]["added"] = True
    assert http_scope(NGINX_GET, "", SERVER, state) == second
    assert state == {"pool": ["connection"]}


@pytest.fixture
def scope_calls():
    """Make the C http_scope's fallback a recording wrapper of the pure one, for one test."""
    calls = []

    def recording(*args):
        calls.append(args)
        return asgi.http_scope_pure(*args)

    c_header_pairs(_speedups)
    _speedups.setup_scope(http_scope_pure=recording, http_versions=asgi._HTTP_VERSIONS)
    yield calls
    c_http_scope()


@pytest.mark.parametrize("case", [
    "nginx_get", "nginx_browser", "apache_cookie_lines_joined", "slash_and_question_mark_only",
    "no_request_uri_nor_document_uri", "query_string_missing_with_latin1",
    "query_string_not_the_targets", "remote_addr_empty_and_port_beyond_ascii",
    "remote_port_65535", "remote_port_12a", "remote_port_leading_zeros", "server_port_18_digits",
    "server_name_empty_with_server_addr", "server_protocol_HTTP/2", "server_protocol_HTTP/0.9",
    "https_1", "request_scheme_https", "request_method_empty", "request_method_latin1",
    "no_variables"])
def test_the_c_http_scope_builds_the_common_scopes_itself(scope_calls, case):
    variables, script_name = SCOPES[case]
    assert ordered(_speedups.http_scope(variables, script_name, SERVER, {})) == ordered(
        asgi.http_scope_pure(variables, script_name, SERVER, {}))
    assert scope_calls == []


@pytest.mark.parametrize("case", [
    "path_info", "percent_encoded_path", "absolute_form", "question_mark_only", "asterisk",
    "latin1_path", "remote_port_superscript_two", "remote_port_latin1_letter",
    "remote_port_19_digits", "server_port_superscript_one", "server_port_digit_and_superscript",
    "server_port_19_digits", "int_value_read_by_the_scope", "int_value_read_by_no_one",
    "str_subclass_value", "int_name", "beyond_latin1_header", "beyond_latin1_query",
    "latin1_name", "dict_subclass", "mapping_proxy", "script_name", "script_name_str_subclass",
    "script_name_bytes"])
def test_the_c_http_scope_hands_anything_unusual_to_the_pure_one_with_the_same_arguments(
        scope_calls, case):
    variables, script_name = SCOPES[case]
    state = {"a": 1}
    outcome(_speedups.http_scope, variables, script_name, SERVER, state)
    assert len(scope_calls) == 1
    assert all(got is given for got, given in zip(scope_calls[0],
                                                  (variables, script_name, SERVER, state)))


@pytest.mark.parametrize("server,state", [(("h", "80"), {}), (["h", 80], {}), (("h", 80, 1), {}),
                                          (("h", True), {}), (SERVER, State())], ids=repr)
def test_the_c_http_scope_hands_an_odd_server_or_state_to_the_pure_one(scope_calls, server,
                                                                       state):
    outcome(_speedups.http_scope, NGINX_GET, "", server, state)
    assert len(scope_calls) == 1 and scope_calls[0][2] is server and scope_calls[0][3] is state


def test_the_c_http_scope_reads_the_version_table_setup_scope_gave_it():
    versions = {"HTTP/1.1": "1.1", "HTTP/9": "9"}
    try:
        _speedups.setup_scope(http_scope_pure=asgi.http_scope_pure, http_versions=versions)
        assert _speedups.http_scope(plain(SERVER_PROTOCOL="HTTP/9"), "", SERVER, {})[
            "http_version"] == "9"
        versions["HTTP/9"] = "9.0"  # the very dict, not a copy
        assert _speedups.http_scope(plain(SERVER_PROTOCOL="HTTP/9"), "", SERVER, {})[
            "http_version"] == "9.0"
    finally:
        c_http_scope()


@pytest.mark.parametrize("kwargs", [
    {}, {"http_scope_pure": asgi.http_scope_pure},
    {"http_versions": {}}, {"http_scope_pure": None, "http_versions": {}},
    {"http_scope_pure": asgi.http_scope_pure, "http_versions": [("HTTP/1.1", "1.1")]},
    {"http_scope_pure": asgi.http_scope_pure, "http_versions": {}, "other": 1},
], ids=lambda kwargs: ",".join(kwargs) or "none")
def test_setup_scope_needs_a_callable_and_a_dict_by_keyword(kwargs):
    with pytest.raises(TypeError):
        _speedups.setup_scope(**kwargs)
    with pytest.raises(TypeError):
        _speedups.setup_scope(asgi.http_scope_pure, {})
    assert c_http_scope()(NGINX_GET, "", SERVER, {}) == asgi.http_scope_pure(NGINX_GET, "",
                                                                             SERVER, {})


def test_the_c_http_scope_is_chosen_at_import_unless_scgikit_pure_is_set():
    code = ("import scgikit.apps.asgi as a; "
            "print(a.http_scope is a.http_scope_pure, a.http_scope.__module__)")
    assert python(code, SCGIKIT_PURE="") == "False scgikit._speedups"
    assert python(code, SCGIKIT_PURE="1") == "True scgikit.apps.asgi"


def test_the_c_http_scope_needs_setup_scope_and_hands_all_to_the_pure_one_until_setup_headers():
    # SCGIKIT_PURE=1: nothing at import sets the C functions up.
    code = """if True:
        from scgikit import _speedups as s
        args = ({"REQUEST_URI": "/a"}, "", ("h", 1), {})
        try:
            s.http_scope(*args)
        except RuntimeError as exc:
            print(exc)
        calls = []
        s.setup_scope(http_scope_pure=lambda *given: calls.append(given) or "pure",
                      http_versions={})
        print(s.http_scope(*args), calls == [args])
        s.setup_headers(header_pairs_pure=lambda v: [], merge_cookie=lambda v, _: v)
        print(s.http_scope(*args)["path"], len(calls))
    """
    assert python(code, SCGIKIT_PURE="1").splitlines() == [
        "scgikit._speedups.setup_scope() was not called", "pure True", "/a 1"]


class Changer:
    """Garbage in a reference cycle whose finalizer, run by a collection in the middle of a
    call, changes the variables that call reads."""

    def __init__(self, variables: dict, change: str) -> None:
        self.variables, self.change, self.cycle = variables, change, self

    def __del__(self) -> None:
        variables = self.variables
        if self.change == "clear":
            variables.clear()
        elif self.change == "ints":
            for name in list(variables):
                variables[name] = 1
        elif self.change == "path_info":
            variables["PATH_INFO"] = "/x"
        else:
            variables.update((name, "\u20ac") for name in list(variables))


@pytest.mark.parametrize("change", ["clear", "ints", "path_info", "beyond_latin1"])
def test_a_collection_that_changes_the_variables_mid_call_does_no_harm(change):
    """Whatever point of the call a collection comes at, the values read are the call's own
    (under AddressSanitizer, scripts/check-speedups-asan, a value freed too early is caught)."""
    build = c_http_scope()
    thresholds = gc.get_threshold()
    try:
        for allocations in range(1, 40):
            # Values of their own (not the code's constants): clearing the dict frees them.
            variables = {name: value.encode("latin-1").decode("latin-1")
                         for name, value in {**NGINX, **APACHE}.items()}
            gc.collect()
            gc.disable()
            Changer(variables, change)
            gc.set_threshold(allocations)
            gc.enable()
            result = outcome(build, variables, "", SERVER, {"a": 1})
            gc.set_threshold(*thresholds)
            assert result[0] == "returned" or result[1] in (AttributeError, UnicodeEncodeError)
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)


@pytest.mark.parametrize("case", ["nginx_get", "nginx_browser", "apache_cookie_lines_joined",
                                  "path_info", "remote_port_superscript_two", "script_name",
                                  "int_value_read_by_the_scope"])
def test_the_c_http_scope_keeps_or_leaks_no_reference(case):
    build = c_http_scope()
    variables, script_name = SCOPES[case]
    state = {"pool": ["connection"]}
    leak_check(lambda: outcome(build, variables, script_name, SERVER, state), variables,
               *variables, *variables.values(), script_name, SERVER, *SERVER, state,
               state["pool"], asgi.http_scope_pure, asgi._HTTP_VERSIONS, header_pairs_pure,
               merge_cookie)


# --- accept_fd: a listener's next connection as a bare descriptor --------------------------------

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


def assert_connected(conn, client):
    """``conn`` is the accepted end of ``client``'s connection: bytes go both ways."""
    client.sendall(b"ping")
    assert conn.recv(16) == b"ping"
    conn.sendall(b"pong")
    assert client.recv(16) == b"pong"
    assert conn.getpeername() == client.getsockname()


def test_accept_fd_gives_the_connection_as_accept_does(listener):
    client = socket.socket(listener.family)
    client.connect(listener.getsockname())
    fd = _speedups.accept_fd(listener.fileno())
    conn = socket.socket(listener.family, listener.type, 0, fd)
    try:
        assert not os.get_inheritable(fd)  # SOCK_CLOEXEC, as socket.accept() makes it
        assert conn.getblocking()  # blocking, as socket.accept() makes it (no default timeout)
        assert_connected(conn, client)
    finally:
        conn.close()
        client.close()


def test_accept_fd_raises_what_accept_raises(listener):
    with pytest.raises(BlockingIOError):
        _speedups.accept_fd(listener.fileno())  # nobody waiting
    with pytest.raises(BlockingIOError):
        listener.accept()
    idle = socket.socket()
    try:
        with pytest.raises(OSError) as raised:
            _speedups.accept_fd(idle.fileno())  # not listening
        assert raised.value.errno == errno.EINVAL
    finally:
        idle.close()
    with pytest.raises(OSError) as raised:
        _speedups.accept_fd(listener.fileno() + 1000)  # no such descriptor
    assert raised.value.errno == errno.EBADF
    for bad in (-1, 2**40, "3", None):
        with pytest.raises((ValueError, TypeError)):
            _speedups.accept_fd(bad)


def test_the_workers_accept_through_the_c_functions_when_the_accelerator_is_on(listener):
    from scgikit.accelerator import socket_speedups, speedups
    from scgikit.connection.sockets import acceptor

    accept = acceptor(listener)
    if socket_speedups() is not None:
        assert accept.func is _speedups.accept_socket
    elif speedups is not None:  # the lambda holds accept_fd in its closure
        assert "accept_fd" in accept.__code__.co_freevars
    else:
        assert "accept_fd" not in accept.__code__.co_freevars


# --- accept_socket: the connection as a socket object, made without socket()'s check ------------

def sample_socket():
    """An open socket of the C type, and its peer."""
    ours, theirs = socket.socketpair()
    return _socket.socket(ours.family, ours.type, 0, ours.detach()), theirs


@pytest.fixture
def checked():
    """The socket type checked as the worker checks it at import: what accept_socket,
    recv_now and close_now take."""
    sample, peer = sample_socket()
    try:
        assert _speedups.socket_layout_matches(sample)
    finally:
        sample.close()
        peer.close()


@pytest.fixture
def template(listener, checked):
    """A closed socket like the listener's connections, of the checked type."""
    made = _socket.socket(listener.family, listener.type, 0)
    made.close()
    return made


def test_the_socket_layout_is_recognised_on_this_python():
    sample, peer = sample_socket()
    try:
        assert _speedups.socket_layout_matches(sample)
    finally:
        sample.close()
    assert not _speedups.socket_layout_matches(sample)  # closed: no descriptor to compare
    assert not _speedups.socket_layout_matches(peer)  # socket.socket: a Python subclass
    peer.close()


def test_accept_socket_gives_the_connection_as_accept_does(listener, template):
    client = socket.socket(listener.family)
    client.connect(listener.getsockname())
    conn = _speedups.accept_socket(listener.fileno(), template)
    try:
        assert type(conn) is _socket.socket
        assert (conn.family, conn.type, conn.proto) == (listener.family, socket.SOCK_STREAM, 0)
        assert not os.get_inheritable(conn.fileno())
        assert conn.getblocking() and conn.gettimeout() is None
        assert_connected(conn, client)
    finally:
        conn.close()
        client.close()
    assert conn.fileno() == -1


def test_accept_socket_returns_none_when_nobody_waits_and_raises_every_other_failure(
        listener, template):
    # No BlockingIOError: its message alone (strerror, a locale decoding) costs more than
    # the accept, once per pass of an accept loop.
    assert _speedups.accept_socket(listener.fileno(), template) is None
    with socket.socket(listener.family) as idle:
        idle.setblocking(False)  # a socket that does not listen: EINVAL, not "none waiting"
        with pytest.raises(OSError) as raised:
            _speedups.accept_socket(idle.fileno(), template)
        assert raised.value.errno == errno.EINVAL
    for bad in (listener, 3, None):  # socket.socket is not the checked C type
        with pytest.raises(TypeError):
            _speedups.accept_socket(listener.fileno(), bad)
    with pytest.raises(OSError) as raised:
        _speedups.accept_socket(listener.fileno() + 1000, template)
    assert raised.value.errno == errno.EBADF
    for bad_fd in (-1, 1 << 40):
        with pytest.raises(ValueError):
            _speedups.accept_socket(bad_fd, template)


def test_accept_socket_keeps_or_leaks_no_reference(listener, template):
    address = listener.getsockname()
    fd = listener.fileno()

    def once():
        with socket.socket(listener.family) as client:
            client.connect(address)
            _speedups.accept_socket(fd, template).close()
        assert _speedups.accept_socket(fd, template) is None  # the queue is empty again

    leak_check(once, template, rounds=2000)


def test_the_c_functions_handle_sockets_when_the_accelerator_is_on_and_the_layout_matches():
    from scgikit.accelerator import ACCELERATED, socket_speedups

    assert socket_speedups() is (_speedups if ACCELERATED else None)


# --- recv_now and close_now: a receive that never waits, and the close, as socket's ---------

def test_recv_now_receives_as_recv_with_msg_dontwait_does(checked):
    conn, peer = sample_socket()
    try:
        with pytest.raises(BlockingIOError):
            _speedups.recv_now(conn, 100, 0)  # nothing yet: never waits, whatever the flags
        peer.sendall(b"hello world")
        assert _speedups.recv_now(conn, 5, socket.MSG_PEEK) == b"hello"
        assert _speedups.recv_now(conn, 5, 0) == b"hello"  # the peek took nothing
        assert _speedups.recv_now(conn, 0, 0) == b""
        assert _speedups.recv_now(conn, 100, socket.MSG_DONTWAIT) == b" world"
        peer.shutdown(socket.SHUT_WR)
        assert _speedups.recv_now(conn, 100, 0) == b""  # the end
    finally:
        conn.close()
        peer.close()


def test_recv_now_raises_what_recv_raises_and_wants_a_checked_socket(checked):
    conn, peer = sample_socket()
    try:
        for bad in (peer, 3, None):  # socket.socket is not the checked C type
            with pytest.raises(TypeError):
                _speedups.recv_now(bad, 100, 0)
        with pytest.raises(ValueError):
            _speedups.recv_now(conn, -1, 0)
        with pytest.raises(OverflowError):
            _speedups.recv_now(conn, 100, 1 << 40)
        conn.close()
        with pytest.raises(OSError) as raised:
            _speedups.recv_now(conn, 100, 0)
        assert raised.value.errno == errno.EBADF
        with pytest.raises(OSError) as raised:  # what the socket method says too
            conn.recv(100, socket.MSG_DONTWAIT)
        assert raised.value.errno == errno.EBADF
    finally:
        conn.close()
        peer.close()


def test_close_now_closes_as_close_does(checked):
    conn, peer = sample_socket()
    try:
        fd = conn.fileno()
        _speedups.close_now(conn)
        assert conn.fileno() == -1
        with pytest.raises(OSError):
            os.fstat(fd)  # the descriptor is gone, not only forgotten
        assert peer.recv(10) == b""  # the peer sees the end
        _speedups.close_now(conn)  # closed already: nothing to do, as close() allows
        for bad in (peer, 3, None):
            with pytest.raises(TypeError):
                _speedups.close_now(bad)
    finally:
        peer.close()


def test_recv_now_and_close_now_keep_or_leak_no_reference(checked):
    conn, peer = sample_socket()
    try:
        def once():
            peer.send(b"x" * 100)
            assert len(_speedups.recv_now(conn, 4096, 0)) == 100
            try:  # (pytest.raises keeps what it caught: tens of bytes a call)
                _speedups.recv_now(conn, 4096, 0)
            except BlockingIOError:
                pass
            else:
                raise AssertionError("received from an empty socket")

        leak_check(once, conn, rounds=2000)
    finally:
        conn.close()
        peer.close()

    def open_and_close():
        made, other = sample_socket()
        _speedups.close_now(made)
        other.close()

    leak_check(open_and_close, rounds=2000)


def test_the_workers_receive_and_close_through_the_c_functions_when_they_are_on():
    from scgikit.accelerator import socket_speedups
    from scgikit.connection import sockets

    on = socket_speedups() is not None
    assert sockets.recv_now is (_speedups.recv_now if on else _socket.socket.recv)
    assert sockets.close_now is (_speedups.close_now if on else _socket.socket.close)


# --- answer_whole: a request whose body came whole, answered by C or by the pure adapter -----

class Recorded(wsgi.WSGIAdapter):
    """An adapter that notes each exception given to ``failed`` and what came with it."""

    def __init__(self, app):
        super().__init__(app, "", "localhost", "80")
        self.failures = []

    def failed(self, exchange, variables, exc):
        context = exc.__context__
        # The traceback the log shows (none for a front end gone: one line, no trace).
        logged_trace = None if isinstance(exc, wsgi.ClientGone) else exc.__traceback__ is not None
        self.failures.append((type(exc).__name__, str(exc), type(context).__name__ if context
                              else None, logged_trace))
        return super().failed(exchange, variables, exc)


class Result:
    """An app's result with a close() that is noted, and that may raise."""

    def __init__(self, chunks, closed, fail_iter=False, fail_close=False):
        self.chunks, self.closed = chunks, closed
        self.fail_iter, self.fail_close = fail_iter, fail_close

    def __iter__(self):
        yield from self.chunks
        if self.fail_iter:
            raise ValueError("iterating")

    def close(self):
        self.closed.append(True)
        if self.fail_close:
            raise RuntimeError("closing")


def answering_apps(tmp_path):
    closed = []
    afile = tmp_path / "file.txt"
    afile.write_bytes(b"from a file")

    def echo(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode(), b" ", body]

    def early(environ, start_response):
        raise KeyError("early")

    def closing(fail_iter=False, fail_close=False):
        def app(environ, start_response):
            start_response("201 Created", [])
            return Result([b"a", b"", b"b"], closed, fail_iter, fail_close)
        return app

    def wrapped(filelike):
        def app(environ, start_response):
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](filelike())
        return app

    return closed, {
        "echo": echo, "early": early, "fails_late": fails_late, "invalid": invalid,
        "closing": closing(), "close_raises": closing(fail_close=True),
        "iter_and_close_raise": closing(fail_iter=True, fail_close=True),
        "real_file": wrapped(lambda: afile.open("rb")),
        "file_like": wrapped(lambda: io.BytesIO(b"from memory")),
    }


HEAD = scgi_head([("CONTENT_LENGTH", "4"), ("SCGI", "1"), ("REQUEST_METHOD", "POST"),
                  ("REQUEST_URI", "/p")])
WHOLE = {  # data, variables, length, start
    "head_then_body": (HEAD + b"body", 4, len(HEAD)),
    "more_than_announced": (HEAD + b"body+extra", 4, len(HEAD)),
    "a_bytearray": (bytearray(HEAD + b"body"), 4, len(HEAD)),
    "the_body_alone": (b"body", 4, 0),
    "no_body": (HEAD, 0, len(HEAD)),
}


def c_answer_whole():
    """The C answer_whole, given its pure pieces as the import gives them (which it does
    only when the accelerator is chosen: under SCGIKIT_PURE=1 this call does it)."""
    return wsgi.c_pieces(_speedups)[2]


def answer_both_ways(monkeypatch, tmp_path, app_name, data, length, start, peer_gone=False):
    """(status, sent, what the peer got, failures, closes) from the pure and the C path."""
    outcomes = []
    for implementation in ("pure", "c"):
        closed, apps = answering_apps(tmp_path)
        shared = Recorded(apps[app_name])
        ours, theirs = socket.socketpair()
        with ours, theirs:
            if peer_gone:
                theirs.close()
            variables = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/p", "SCGI": "1",
                         "CONTENT_LENGTH": str(length)}
            if implementation == "pure":
                monkeypatch.setattr(wsgi, "build_environ", wsgi.environ_pure)
                monkeypatch.setattr(wsgi, "new_exchange", wsgi._Exchange)
                answer = shared._answer_whole(ours, data, variables, length, start)
                monkeypatch.undo()
            else:
                answer = c_answer_whole()(shared, ours, data, variables, length, start)
            ours.shutdown(socket.SHUT_WR)
            got = b"" if peer_gone else read_all(theirs)
        outcomes.append((answer, got, shared.failures, closed))
    return outcomes


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
@pytest.mark.parametrize("app_name", ["echo", "early", "fails_late", "invalid", "closing",
                                      "close_raises", "iter_and_close_raise", "real_file",
                                      "file_like"])
def test_answer_whole_answers_every_kind_of_app_as_the_pure_adapter(monkeypatch, tmp_path,
                                                                     app_name):
    pure, c = answer_both_ways(monkeypatch, tmp_path, app_name, *WHOLE["head_then_body"])
    assert c == pure
    (status, sent), got, failures, closed = c
    assert sent == len(got) and got.startswith(b"Status: " + status[:3].encode())
    if app_name == "iter_and_close_raise":  # close() raised while the iteration's error went
        assert failures == [("RuntimeError", "closing", "ValueError", True)]
    if "clos" in app_name:
        assert closed == [True]


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
@pytest.mark.parametrize("case", sorted(WHOLE))
def test_answer_whole_reads_the_body_where_the_pure_adapter_does(monkeypatch, tmp_path, case):
    pure, c = answer_both_ways(monkeypatch, tmp_path, "echo", *WHOLE[case])
    assert c == pure
    assert c[1].endswith(b"/p body" if WHOLE[case][1] else b"/p ")


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
def test_answer_whole_to_a_closed_peer_is_the_pure_adapters_client_gone(monkeypatch, tmp_path):
    pure, c = answer_both_ways(monkeypatch, tmp_path, "closing", *WHOLE["no_body"],
                               peer_gone=True)
    assert c == pure
    assert [failure[0] for failure in c[2]] == ["ClientGone"] and c[3] == [True]



@pytest.mark.parametrize("kind", [bytes, bytearray])
@pytest.mark.parametrize("implementation", ["pure", "c"])
def test_a_whole_body_read_at_once_is_copied_once(monkeypatch, implementation, kind):
    """The app's read() of a body that came with the head gives one copy of it: what
    the heap holds at its peak is about the body once, not the file's copy and the
    read's again (as BytesIO over a view of the received bytes would)."""
    if implementation == "c" and _speedups is None:
        pytest.skip(NOT_BUILT)
    size = 1 << 20
    read = []

    def app(environ, start_response):
        read.append(len(environ["wsgi.input"].read()))
        start_response("200 OK", [])
        return [b"ok"]

    shared = wsgi.WSGIAdapter(app, "", "localhost", "80")
    head = scgi_head([("CONTENT_LENGTH", str(size)), ("SCGI", "1")])
    data = kind(head + b"x" * size)
    variables = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(size)}
    if implementation == "pure":
        monkeypatch.setattr(wsgi, "build_environ", wsgi.environ_pure)
        monkeypatch.setattr(wsgi, "new_exchange", wsgi._Exchange)
        answer = shared._answer_whole
    else:
        answer = functools.partial(c_answer_whole(), shared)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        tracemalloc.start()
        try:
            status, _ = answer(ours, data, variables, size, len(head))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert status == "200 OK" and read == [size]
    assert size <= peak < 1.5 * size

class Stop(BaseException):
    """Not an Exception: what an app's answer must let through, as SystemExit does."""


class Stopping(Result):
    def __iter__(self):
        raise Stop


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
def test_answer_whole_lets_a_base_exception_through_after_close(stream):
    closed = []

    def app(environ, start_response):
        start_response("200 OK", [])
        return Stopping([], closed)

    shared = Recorded(app)
    with pytest.raises(Stop):
        c_answer_whole()(shared, stream[0], b"", {}, 0, 0)
    assert closed == [True] and shared.failures == []


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
@pytest.mark.parametrize("args,error", [
    ((b"abc", {}, 4, 0), ValueError),  # the body is not all there
    ((b"abc", {}, 1, 3), ValueError),
    ((b"abc", {}, -1, 0), ValueError),
    ((b"abc", {}, 0, -1), ValueError),
    ((42, {}, 0, 0), TypeError),
])
def test_answer_whole_refuses_a_body_that_is_not_whole(stream, args, error):
    with pytest.raises(error):
        c_answer_whole()(adapter(), stream[0], *args)


@pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)
@pytest.mark.parametrize("app_name", ["echo", "early", "iter_and_close_raise", "file_like"])
def test_answer_whole_keeps_or_leaks_no_reference(tmp_path, app_name, stream):
    ours, theirs = stream
    theirs.setblocking(False)
    closed, apps = answering_apps(tmp_path)
    shared = wsgi.WSGIAdapter(apps[app_name], "", "localhost", "80")
    data, length, start = WHOLE["more_than_announced"]
    variables = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/p", "CONTENT_LENGTH": "4"}
    logger = logging.getLogger("scgikit")

    def once():
        c_answer_whole()(shared, ours, data, variables, length, start)
        closed.clear()  # the app's own record of close() calls is not what is measured
        try:
            while theirs.recv(1 << 16):
                pass
        except BlockingIOError:
            pass

    level = logger.level
    logger.setLevel(logging.CRITICAL)  # the failures' log lines are not what is measured
    try:
        leak_check(once, shared, data, variables, rounds=3000)
    finally:
        logger.setLevel(level)


def test_the_workers_run_their_accept_loops_in_c_when_the_accelerator_is_on():
    from scgikit.accelerator import socket_speedups
    from scgikit.workers import loops

    on = socket_speedups() is not None
    assert (loops.QueueLoop is not loops.PureQueueLoop) is on
