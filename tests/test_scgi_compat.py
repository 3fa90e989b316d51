"""The twins of the ``scgi`` package 2.2's modules: every public name is there, or the porting
guide says why not, and the twins give what the originals give on the same input.

The original package is installed beside scgikit (scripts/install-test-deps), so each
function is run side by side with its original on the same bytes or the same
environment, malformed ones included, and the values or the exceptions compared.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from netstrings import netstring
from servers import child_env

import scgikit.scgi_server
import scgikit.systemd_socket
import scgikit.util
from scgikit.apps.loader import AppImportError, app_kind
from scgikit.config import ConfigError

original_util = pytest.importorskip("scgi.util", reason="the scgi package (PyPI scgi==2.2) is "
                                    "not installed: run scripts/install-test-deps")
import scgi.scgi_server  # noqa: E402
import scgi.systemd_socket  # noqa: E402

PORTING = Path(__file__).parent.parent / "docs" / "porting.md"
TWINS = {"scgi.scgi_server": "scgikit.scgi_server", "scgi.util": "scgikit.util",
         "scgi.systemd_socket": "scgikit.systemd_socket",
         "scgi.session_server": "scgikit.session_server"}


def public_names(module: types.ModuleType) -> list[str]:
    """The names a script can take from ``module``: its functions, classes and constants
    (the modules it imports left out), and the methods and attributes of its classes."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        names.append(name)
        if isinstance(value, type) and value.__module__ == module.__name__:
            names += [f"{name}.{attr}" for attr in vars(value) if not attr.startswith("_")]
    return names


def guide_rows() -> dict[str, dict[str, str]]:
    """The porting guide's tables for scgi 2.2, by module: name -> what scgikit has."""
    text = PORTING.read_text()
    section = text.split("\n## From the `scgi` package 2.2\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for part in section.split("\n### ")[1:]:
        heading = re.match(r"`(scgi\.\w+)` → ", part)
        if not heading:
            continue  # not one module's table
        rows[heading[1]] = {m[1]: m[2] for m in
                            re.finditer(r"^\| `([\w.]+)` \| (same|differs|absent) \|", part, re.M)}
    return rows


def twin_has(twin: types.ModuleType, dotted: str) -> bool:
    obj: object = twin
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


@pytest.mark.parametrize("original", sorted(TWINS))
def test_every_public_name_of_the_original_is_in_the_guide_and_there_unless_it_says_absent(
        original):
    rows = guide_rows()[original]
    twin = importlib.import_module(TWINS[original])
    names = public_names(importlib.import_module(original))
    assert sorted(set(names) - set(rows)) == [], "names the porting guide does not mention"
    for name in names:
        assert twin_has(twin, name) == (rows[name] != "absent"), name


def test_the_guide_covers_the_modules_scgikit_leaves_out():
    text = PORTING.read_text()
    for module in ("scgi.passfd", "scgi.quixote_handler", "scgi.session_server"):
        assert f"`{module}`" in text
    for module in ("scgikit.passfd", "scgikit.quixote_handler"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)


# --- scgi.util ------------------------------------------------------------------------------

def outcome(function, *args):
    """What ``function(*args)`` gives: its value, or its exception's type and message."""
    try:
        return ("value", function(*args))
    except Exception as exc:  # the exceptions are what is compared
        return ("raised", type(exc).__name__, str(exc))


def side_by_side(name, data: bytes):
    ours = outcome(getattr(scgikit.util, name), io.BytesIO(data))
    theirs = outcome(getattr(original_util, name), io.BytesIO(data))
    assert ours == theirs, data


MALFORMED = [
    b"", b"5", b"5:abc", b"5:abcde", b"5:abcde;", b"x:", b":", b":,", b"0:,", b"-1:,", b" 3 :abc,",
    b"+3:abc,", b"1_0:0123456789,", b"3:abc,rest", b"99999999999999999999:a,", b"\xb2:ab,",
    b"12:A\0B\0C\0D\0E\0F\0,",  # pairs, but no CONTENT_LENGTH or SCGI: the original takes it
    b"4:A\0B\0,", b"3:A\0B,", b"5:A\0B\0C,", b"2:\0\0,", b"4:A\0\xff\0,",
]


@pytest.mark.parametrize("data", MALFORMED)
@pytest.mark.parametrize("name", ["ns_read_size", "ns_reads", "read_env"])
def test_netstring_readers_give_what_the_originals_give(name, data):
    side_by_side(name, data)


def test_a_whole_request_head_reads_as_in_the_original():
    from scgikit.protocol import encode_request

    head = encode_request({"REQUEST_METHOD": "POST", "HTTP_X": "\xe9t\xe9"}, 5) + b"hello"
    for name in ("ns_read_size", "ns_reads", "read_env"):
        side_by_side(name, head)
    assert scgikit.util.read_env(io.BytesIO(head)) == {
        "CONTENT_LENGTH": "5", "SCGI": "1", "REQUEST_METHOD": "POST", "HTTP_X": "\xe9t\xe9"}


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=40),
    st.lists(st.binary(max_size=6), max_size=8).map(lambda items: netstring(b"\0".join(items))),
    st.lists(st.binary(max_size=6), max_size=8).map(
        lambda items: netstring(b"".join(item + b"\0" for item in items))),
))
def test_any_bytes_read_as_in_the_original(data):
    for name in ("ns_reads", "read_env"):
        side_by_side(name, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
@example(b"A\0B\0C")  # no NUL last: the original leaves the last item out
@example(b"A\0B\0A\0C\0")  # a repeated name: the last value
def test_parse_env_gives_what_the_original_gives(block):
    assert outcome(scgikit.util.parse_env, block) == outcome(original_util.parse_env, block)


def test_header_encoding_and_log_lines_are_the_originals(capsys):
    assert scgikit.util.HEADER_ENCODING == original_util.HEADER_ENCODING
    original_util.log("a message")
    scgikit.util.log("a message")
    theirs, ours = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] a message", ours)
    assert len(ours) == len(theirs) and ours.endswith(theirs[21:])


# --- scgi.systemd_socket --------------------------------------------------------------------

# Runs sd_listen_fds() of the original and of the twin under each environment of argv[1]
# (a JSON list; "PID" stands for this process's pid), then get_systemd_socket() with a
# listening TCP socket at fd 3 (argv[2] sockets for one case), and prints what each gave.
SYSTEMD_PROBE = """
import json, os, socket, sys
import scgi.systemd_socket as theirs
import scgikit.systemd_socket as ours

def outcome(function):
    try:
        value = function()
    except Exception as exc:
        return ["raised", type(exc).__name__, str(exc)]
    if isinstance(value, socket.socket):
        value = ["socket", value.family.name, value.type.name, list(value.getsockname())]
    return ["value", value]

listener = socket.create_server(("127.0.0.1", 0))
saved = os.dup(listener.fileno())
results = []
for environ in json.loads(sys.argv[1]):
    row = []
    for module in (theirs, ours):
        os.dup2(saved, 3)
        os.dup2(saved, 4)
        for name in ("LISTEN_PID", "LISTEN_FDS"):
            os.environ.pop(name, None)
        os.environ.update({k: v.replace("PID", str(os.getpid())) for k, v in environ.items()})
        row.append([outcome(module.sd_listen_fds), outcome(module.get_systemd_socket)])
    results.append(row)
print(json.dumps(results))
"""

SYSTEMD_ENVIRONS = [
    {},
    {"LISTEN_FDS": "1"},  # no LISTEN_PID: for nobody
    {"LISTEN_PID": "PID", "LISTEN_FDS": "1"},
    {"LISTEN_PID": " PID ", "LISTEN_FDS": " 1 "},  # read as int() reads them
    {"LISTEN_PID": "1", "LISTEN_FDS": "1"},  # for another process
    {"LISTEN_PID": "PIDx", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "PID", "LISTEN_FDS": "2"},
    {"LISTEN_PID": "PID", "LISTEN_FDS": "0"},
    {"LISTEN_PID": "PID", "LISTEN_FDS": "one"},
    {"LISTEN_PID": "PID"},
]


def probe_systemd(environs):
    result = subprocess.run([sys.executable, "-c", SYSTEMD_PROBE, json.dumps(environs)],
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_systemd_sockets_are_found_as_the_original_finds_them():
    for environ, (theirs, ours) in zip(SYSTEMD_ENVIRONS, probe_systemd(SYSTEMD_ENVIRONS)):
        assert ours == theirs, environ
    (theirs, ours), = probe_systemd([{"LISTEN_PID": "PID", "LISTEN_FDS": "1"}])
    assert ours[1][1][:3] == ["socket", "AF_INET", "SOCK_STREAM"]


def test_a_negative_listen_fds_is_refused_where_the_original_took_fd_3():
    (theirs, ours), = probe_systemd([{"LISTEN_PID": "PID", "LISTEN_FDS": "-1"}])
    assert theirs[0] == ["value", -1] and theirs[1][0] == "value"  # a socket, from fd 3
    assert ours == [["raised", "OSError", "invalid LISTEN_FDS value"]] * 2


# get_systemd_socket() of the twin with a listening socket at fd 3, then with one that
# does not listen: its descriptor, or its error.
OWN_SOCKET_PROBE = """
import os, socket
import scgikit.systemd_socket as ours

os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
listener = socket.create_server(("127.0.0.1", 0))
os.dup2(listener.fileno(), 3)
print(ours.get_systemd_socket().fileno())
bound = socket.socket()
bound.bind(("127.0.0.1", 0))
os.dup2(bound.fileno(), 3)
try:
    ours.get_systemd_socket()
except OSError as exc:
    print(type(exc).__name__, exc)
"""


def test_the_systemd_socket_keeps_fd_3_and_must_be_listening():
    result = subprocess.run([sys.executable, "-c", OWN_SOCKET_PROBE], capture_output=True,
                            text=True, timeout=60, env=child_env())
    assert result.stdout == "3\nOSError systemd fd 3: socket is not listening\n", result.stderr


def test_the_first_descriptor_is_the_originals():
    assert scgikit.systemd_socket.SD_LISTEN_FDS_START == scgi.systemd_socket.SD_LISTEN_FDS_START


# --- scgi.scgi_server: what SCGIServer takes ------------------------------------------------

def test_max_children_and_port_may_be_strings_as_optparse_gives_them():
    server = scgikit.scgi_server.SCGIServer(port="4010", max_children="5")
    assert (server.port, server.max_children) == (4010, 5)
    assert server.config().workers == 5
    assert server.config().bind == ("127.0.0.1:4010",)
    # The original takes the string, then fails on its first request.
    with pytest.raises(TypeError, match="'<' not supported"):
        scgi.scgi_server.SCGIServer(max_children="5").delegate_request(None)


@pytest.mark.parametrize("value", ["five", "", None, "2.5"])
def test_max_children_that_is_not_a_whole_number_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"^SCGIServer: max_children {value!r} is not a "
                                          "whole number$"):
        scgikit.scgi_server.SCGIServer(max_children=value)


@pytest.mark.parametrize("host, bind", [
    (None, "127.0.0.1:4000"),  # the original: every interface
    ("", "0.0.0.0:4000"),  # as the original's default
    ("localhost", "localhost:4000"),  # Quixote's default
    ("::1", "[::1]:4000"),
])
def test_host_becomes_the_address_the_master_binds(host, bind):
    assert scgikit.scgi_server.SCGIServer(host=host).config().bind == (bind,)


def test_the_class_attributes_and_defaults_are_the_originals():
    import inspect

    ours, theirs = scgikit.scgi_server.SCGIServer, scgi.scgi_server.SCGIServer
    assert ours.DEFAULT_PORT == theirs.DEFAULT_PORT == 4000
    defaults = {name: p.default for name, p in inspect.signature(theirs).parameters.items()}
    mine = {name: p.default for name, p in inspect.signature(ours).parameters.items()
            if name in defaults}
    assert mine == defaults | {"handler_class": scgikit.scgi_server.SCGIHandler, "host": None}


def test_the_handler_is_named_as_one_so_that_no_guess_is_made():
    def create_handler(parent_fd):
        return scgikit.scgi_server.SCGIHandler(parent_fd)

    config = scgikit.scgi_server.SCGIServer(create_handler).config()
    assert config.interface == "handler"
    assert app_kind(create_handler, config.interface) == "handler"
    with pytest.raises(AppImportError, match="cannot be called as a WSGI app"):
        app_kind(create_handler)  # what a guess makes of it


def test_a_subclass_adds_config_options_of_its_own():
    class Recycling(scgikit.scgi_server.SCGIServer):
        def config_options(self):
            return super().config_options() | {"max_requests": 100}

    config = Recycling(max_children="3", timeout=5).config()
    assert (config.max_requests, config.workers, config.timeout) == (100, 3, 5)


def test_engine_options_pass_through_and_lists_become_tuples():
    config = scgikit.scgi_server.SCGIServer(bind=["unix:/tmp/a.sock"], max_requests=7).config()
    assert config.bind == ("unix:/tmp/a.sock",) and config.max_requests == 7


def test_a_handler_has_no_loop_of_its_own_to_serve():
    with pytest.raises(NotImplementedError, match="scgikit's workers call produce"):
        scgikit.scgi_server.SCGIHandler(None).serve()


def test_a_handlers_read_env_keeps_scgis_rules_where_util_keeps_the_originals():
    from scgikit.protocol import ProtocolError

    block = netstring(b"A\0B\0")  # no CONTENT_LENGTH, no SCGI=1
    assert scgikit.util.read_env(io.BytesIO(block)) == {"A": "B"}
    assert original_util.SCGIHandler(None).read_env(io.BytesIO(block)) == {"A": "B"}
    with pytest.raises(ProtocolError, match="first header must be CONTENT_LENGTH"):
        scgikit.util.SCGIHandler(None).read_env(io.BytesIO(block))


def test_handler_factory_marks_and_returns_the_function_itself():
    def create_handler(parent_fd):
        return None

    assert scgikit.scgi_server.handler_factory(create_handler) is create_handler
    assert app_kind(create_handler) == "handler"


def test_the_default_listening_socket_is_the_originals():
    ours = scgikit.scgi_server.SCGIServer(host="127.0.0.1", port=0).get_listening_socket()
    theirs = scgi.scgi_server.SCGIServer(host="127.0.0.1", port=0).get_listening_socket()
    with ours, theirs:
        for sock in (ours, theirs):
            assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            assert sock.getsockname()[0] == "127.0.0.1"
