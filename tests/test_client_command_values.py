"""Every value of every flag of `scgikit request` and `scgi-test` is checked before anything
connects: a wrong one is exit 2 and one line on stderr (the program, the flag, the value,
what it takes), nothing on stdout; the edge values that are right still work.

The commands run in this process.  Wrong values are sent towards a unix socket in a folder
that does not exist, so a value wrongly taken shows as exit 7 (cannot connect), never as a
wait.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import ServerProcess

from scgikit.cli import main, scgi_test_main

pytestmark = pytest.mark.one_path(reason="the client command's flags are checked in Python only")

APP = "tests/fixtureapps/client_apps.py:app"
NOWHERE_FOLDER = os.path.join(tempfile.gettempdir(), f"scgikit-nowhere-{uuid.uuid4().hex}")
NOWHERE_PATH = os.path.join(NOWHERE_FOLDER, "s.sock")
NOWHERE = f"unix:{NOWHERE_PATH}"

# The values are checked by Python on both paths: the pure-Python run takes a smaller sample.
PURE = os.environ.get("SCGIKIT_PURE", "") not in ("", "0")
checked = settings(max_examples=12 if PURE else 50, deadline=None)


def run(entry, argv, stdin=b""):
    """``entry(argv)``'s exit status, stdout (bytes) and stderr (text)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = entry(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    out.flush()
    return code, out.buffer.getvalue(), err.getvalue()


def request(*args):
    return run(main, ["request", *args])


def scgi_test(*args):
    return run(scgi_test_main, list(args))


def assert_refused(prog, result, flag=None):
    code, out, err = result
    assert code == 2, err
    assert out == b""
    assert "Traceback" not in err
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: ") and err.strip() != f"{prog}:"
    if flag is not None:
        assert flag in err


def refused_by_request(*args, flag=None):
    assert_refused("scgikit request", request(*args), flag)


def refused_by_scgi_test(*args, flag=None):
    assert_refused("scgi-test", scgi_test(*args), flag)


# --- wrong values ----------------------------------------------------------------------

# What argv carries: any text, and bytes that are not UTF-8 as lone surrogates.
UNDECODABLE = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)
ANY_CHARACTER = st.one_of(st.characters(), UNDECODABLE)
ARGV_TEXT = st.text(ANY_CHARACTER, max_size=30)
CONTROL = st.sampled_from(["\0", "\r", "\n", "\x01", "\x1b", "\x7f", "\r\n"])


def with_one_of(characters, around=ARGV_TEXT):
    """Text that holds at least one of ``characters``, anywhere."""
    return st.tuples(around, characters, around).map("".join)


NUMBER_CHARACTERS = re.compile(r"[0-9.eE+-]*")
BAD_TIMEOUTS = st.one_of(
    st.floats(max_value=0.0009).map(repr),  # negative, zero, too short; -inf
    st.floats(min_value=86400.001).map(repr),  # over a day; huge; inf
    st.integers(max_value=0).map(str),
    st.integers(min_value=86401).map(str),
    st.sampled_from(["nan", "NaN", "-nan", "inf", "Infinity", "1e400", "", " ", " 5", "5 ",
                     "1_0", "0x10", "1,5", "30s", "e3", ".", "--1", "٣", "５", "1e-400"]),
    ARGV_TEXT.filter(lambda text: not NUMBER_CHARACTERS.fullmatch(text)),
)


@checked
@given(BAD_TIMEOUTS)
def test_request_refuses_a_timeout_that_is_not_seconds_from_a_millisecond_to_a_day(value):
    refused_by_request(f"--timeout={value}", "--", NOWHERE, "/", flag="-m/--timeout")


@checked
@given(BAD_TIMEOUTS)
def test_scgi_test_refuses_a_timeout_that_is_not_seconds_from_a_millisecond_to_a_day(value):
    refused_by_scgi_test(f"--timeout={value}", "--unix", NOWHERE_PATH, "--", "/",
                         flag="-m/--timeout")


def test_a_negative_timeout_names_the_flag_the_value_and_the_range():
    assert request("-m", "-1", NOWHERE, "/") == (2, b"", (
        "scgikit request: -m/--timeout '-1': expected a number of seconds from 0.001 to 86400\n"))


BAD_PORTS = st.one_of(
    st.integers(max_value=0).map(str),
    st.integers(min_value=65536).map(str),
    st.just("9" * 5000),
    st.sampled_from(["", " 80", "80 ", "+80", "0x50", "8_0", "٣", "８０", "http", "4000."]),
    ARGV_TEXT.filter(lambda text: not (text.isascii() and text.isdigit())),
)


@checked
@given(BAD_PORTS)
def test_scgi_test_refuses_a_port_outside_1_to_65535(value):
    refused_by_scgi_test(f"--port={value}", "--unix", NOWHERE_PATH, "--", "/", flag="--port")


NOT_IN_A_HOST = st.one_of(
    st.sampled_from(list(" /@?#&=,;!*'\"\\%+()<>{}|^`~$")), CONTROL, UNDECODABLE,
    st.characters(min_codepoint=0x80).filter(lambda ch: not ch.isascii()),
)
BAD_HOSTS = st.one_of(
    with_one_of(NOT_IN_A_HOST, st.text("abcz019.-", max_size=8)),
    st.sampled_from(["", "-leading", ".", "[::1", "::1]", "::zz", "1:2", "[]", "fe80::1%",
                     "fe80::1%eth 0", "1.2.3.4:80", "a" * 254]),
)


@checked
@given(BAD_HOSTS)
def test_scgi_test_refuses_a_host_that_is_not_a_name_or_an_ip_address(value):
    refused_by_scgi_test(f"--host={value}", "--unix", NOWHERE_PATH, "--", "/", flag="--host")


BAD_UNIX_PATHS = st.one_of(
    st.just(""),
    with_one_of(st.just("\0"), st.text(max_size=10)),
    st.text(ANY_CHARACTER, min_size=109, max_size=200).filter(
        lambda text: len(text.encode("utf-8", "surrogatepass")) > 108),
    st.just("/" + "x" * 108),
    st.just("/tmp/\ud800"),  # a surrogate no byte gives: not a file name at all
)


@checked
@given(BAD_UNIX_PATHS)
def test_scgi_test_refuses_a_unix_path_that_is_empty_too_long_or_holds_nul(value):
    refused_by_scgi_test(f"--unix={value}", "--", "/", flag="--unix")


BAD_UNIX_ADDRESSES = st.one_of(
    st.just("/" + "x" * 108),
    with_one_of(st.just("\0"), st.text(max_size=10)).map(lambda text: "/" + text),
    st.text(ANY_CHARACTER, min_size=108, max_size=200).map(lambda text: "/" + text),
)


@checked
@given(BAD_UNIX_ADDRESSES)
def test_request_refuses_a_unix_address_that_is_too_long_or_holds_nul(value):
    refused_by_request("--", f"unix:{value}", "/", flag="ADDRESS")


BAD_ADDRESSES = st.one_of(
    # (unix://PATH is an address: a unix socket, as unix:PATH)
    st.tuples(st.sampled_from(["http", "https", "scgi", "tcp"]),
              st.text(max_size=10)).map(lambda parts: f"{parts[0]}://{parts[1]}"),
    BAD_HOSTS.filter(lambda host: ":" not in host and not host.startswith("/")
                     and not host.startswith("./") and not host.startswith("../")
                     and host != "" and not host.isdigit()).map(lambda host: f"{host}:4000"),
    BAD_PORTS.filter(lambda port: ":" not in port).map(lambda port: f"localhost:{port}"),
    st.sampled_from(["", "unix:", "fd://3", "fd://x", "[::1", "[::1]x", "[::1]:", "::1:4000",
                     "localhost:", ":0", "0", "65536", "[::1]:0", "[zz]:4000"]),
)


@checked
@given(BAD_ADDRESSES)
def test_request_refuses_an_address_that_is_not_host_port_or_a_unix_path(value):
    refused_by_request("--", value, "/", flag="ADDRESS")


def test_a_url_for_an_address_is_told_what_an_scgi_address_is():
    assert request("http://localhost:4000/", "/") == (2, b"", (
        "scgikit request: ADDRESS 'http://localhost:4000/': an SCGI address is HOST:PORT or "
        "a unix path, not a URL\n"))


BAD_URIS = st.one_of(
    ARGV_TEXT.filter(lambda text: not text.startswith("/")),
    with_one_of(st.one_of(st.just(" "), CONTROL, UNDECODABLE)).map(lambda text: "/" + text),
)


@checked
@given(BAD_URIS)
def test_request_refuses_a_uri_not_starting_with_a_slash_or_holding_spaces_or_controls(value):
    refused_by_request("--", NOWHERE, value, flag="URI")


@checked
@given(BAD_URIS)
def test_scgi_test_refuses_a_uri_not_starting_with_a_slash_or_holding_spaces_or_controls(
        value):
    refused_by_scgi_test("--unix", NOWHERE_PATH, "--", value, flag="URI")


NOT_IN_A_TOKEN = st.one_of(st.sampled_from(list(' "(),/:;<=>?@[\\]{}')), CONTROL, UNDECODABLE,
                           st.characters(min_codepoint=0x80))
BAD_METHODS = st.one_of(st.just(""), with_one_of(NOT_IN_A_TOKEN, st.text("GETPOST", max_size=6)))


@checked
@given(BAD_METHODS)
def test_request_refuses_a_method_that_is_not_an_http_token(value):
    refused_by_request(f"--request={value}", "--", NOWHERE, "/", flag="-X/--request")


HEADER_NAME = st.text("abcXYZ019-", min_size=1, max_size=10)
BAD_HEADER_NAMES = st.one_of(
    st.just(""),
    with_one_of(st.one_of(NOT_IN_A_TOKEN, st.sampled_from(list("_.!#$%&'*+^`|~"))),
                st.text("abcXYZ019-", max_size=6)).filter(lambda name: ":" not in name),
)
BAD_HEADERS = st.one_of(
    st.tuples(BAD_HEADER_NAMES, ARGV_TEXT).map(lambda parts: f"{parts[0]}: {parts[1]}"),
    ARGV_TEXT.filter(lambda text: ":" not in text),  # no ':' at all
    st.tuples(HEADER_NAME, with_one_of(st.one_of(CONTROL, UNDECODABLE)))
    .map(lambda parts: f"{parts[0]}: {parts[1]}"),
    # Content-Length is the body's (none here: 0), whatever the case of the name
    st.tuples(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]),
              ARGV_TEXT.filter(lambda text: text.strip(" \t") != "0"))
    .map(lambda parts: f"{parts[0]}: {parts[1]}"),
)


@checked
@given(BAD_HEADERS)
def test_request_refuses_a_header_with_a_bad_name_a_control_character_or_a_wrong_length(
        value):
    refused_by_request(f"--header={value}", "--", NOWHERE, "/", flag="-H/--header")


@pytest.mark.parametrize("name", ["Host", "Content-Length"])
def test_request_refuses_host_or_content_length_given_twice(name):
    refused_by_request("-H", f"{name}: 0", "-H", f"{name.lower()}: 0", NOWHERE, "/",
                       flag="-H/--header")


def test_a_content_length_by_hand_must_be_the_bodys():
    refused_by_request("-d", "abc", "-H", "Content-Length: 4", NOWHERE, "/",
                       flag="the body's length, 3")


BAD_VARIABLES = st.one_of(
    ARGV_TEXT.filter(lambda text: "=" not in text),  # no '='
    ARGV_TEXT.map(lambda value: "=" + value),  # no name
    st.tuples(with_one_of(st.one_of(st.just(" "), CONTROL, UNDECODABLE,
                                    st.characters(min_codepoint=0x80)),
                          st.text("ABC_", max_size=5)).filter(lambda name: "=" not in name),
              ARGV_TEXT).map("=".join),
    st.tuples(st.sampled_from(["CONTENT_LENGTH", "SCGI"]), ARGV_TEXT).map("=".join),
    st.tuples(st.text("ABC_", min_size=1, max_size=5),
              with_one_of(st.one_of(st.just("\0"), UNDECODABLE))).map("=".join),
)


@checked
@given(BAD_VARIABLES)
def test_request_refuses_a_variable_without_a_name_or_with_nul_or_a_fixed_name(value):
    refused_by_request(f"--env={value}", "--", NOWHERE, "/", flag="-e/--env")


FILE_NAME = st.text(st.characters(blacklist_characters="/\0"), min_size=1, max_size=20).filter(
    lambda name: name not in (".", ".."))
BAD_OUTPUTS = st.one_of(
    st.just(""),
    FILE_NAME.map(lambda name: os.path.join(NOWHERE_FOLDER, name)),  # no such folder
    st.just(tempfile.gettempdir()),  # a folder, not a file
    st.just(tempfile.gettempdir() + "/"),
    with_one_of(st.just("\0"), FILE_NAME),
    st.just(os.path.join(tempfile.gettempdir(), "n" * 300)),  # longer than a name can be
)


@checked
@given(BAD_OUTPUTS)
def test_request_refuses_an_output_that_is_a_folder_or_in_a_folder_that_does_not_exist(value):
    refused_by_request(f"--output={value}", "--", NOWHERE, "/", flag="-o/--output")


@checked
@given(st.one_of(st.just("@"), with_one_of(st.just("\0"), ARGV_TEXT).map(lambda p: "@" + p)))
def test_request_refuses_data_naming_no_file_or_a_file_name_with_nul(value):
    refused_by_request(f"--data={value}", "--", NOWHERE, "/", flag="-d/--data")


def test_head_with_data_is_refused_as_curl_does():
    refused_by_request("-I", "-d", "x", NOWHERE, "/", flag="-I/--head")


def test_an_unreadable_data_file_is_one_line_and_exit_26_before_connecting(tmp_path):
    for path in (tmp_path / "missing", tmp_path):  # no such file; a folder
        code, out, err = request("-d", f"@{path}", NOWHERE, "/")
        assert (code, out) == (26, b"")
        assert err.startswith("scgikit request: -d/--data: cannot read ")
        assert len(err.splitlines()) == 1


def test_a_third_positional_argument_is_refused():
    refused_by_request(NOWHERE, "/", "/again")


def test_right_values_sent_nowhere_fail_to_connect_not_to_parse():
    """The refusals above are of the values, not of the place they were sent to."""
    code, out, err = request("-m", "86400", "-X", "PURGE", "-H", "X-A: b", "-e", "A=b",
                             "-o", "-", NOWHERE, "/")
    assert (code, out) == (7, b"") and "could not connect" in err
    code, out, err = scgi_test("-m", "0.001", "--unix", NOWHERE_PATH, "/")
    assert (code, out) == (7, b"") and "could not connect" in err


# --- edge values that are right, against a real server ---------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("values")
    proc = ServerProcess.scgikit(APP, "--workers", "1",
                                 bind=("127.0.0.1:0", f"unix:{folder}/s.sock")).start()
    addresses = [match.group(1) for match in proc.wait_for_log(r"Listening at: (\S+)", count=2)]
    tcp = next(address for address in addresses if not address.startswith("unix:"))
    yield tcp, f"{folder}/s.sock"
    proc.stop()


def answered(*args):
    code, out, err = request(*args)
    assert code == 0, err
    return out


def test_the_longest_timeout_and_any_token_method_reach_the_app(server):
    tcp, _ = server
    env = json.loads(answered("-m", "86400", "-X", "M-SEARCH!#$%&'*+.^_`|~", tcp, "/env"))
    assert env["REQUEST_METHOD"] == "M-SEARCH!#$%&'*+.^_`|~"


def test_empty_tab_and_non_ascii_header_values_reach_the_app(server):
    tcp, _ = server
    env = json.loads(answered("-H", "X-Empty:", "-H", "X-Tab: a\tb", "-H", "X-Text: é ✓",
                              "--", tcp, "/env"))
    assert env["HTTP_X_EMPTY"] == "" and env["HTTP_X_TAB"] == "a\tb"
    assert env["HTTP_X_TEXT"].encode("latin-1").decode("utf-8") == "é ✓"


def test_a_content_length_equal_to_the_body_and_raw_bytes_of_data_are_sent(server):
    tcp, _ = server
    data = "a=\udcff\udcfe"  # bytes 0xff 0xfe, as argv carries them
    answer = json.loads(answered("-d", data, "-H", "Content-Length: 4", "--", tcp, "/hash"))
    assert answer["size"] == 4
    assert answer["sha256"] == hashlib.sha256(b"a=\xff\xfe").hexdigest()


def test_variables_with_an_empty_value_or_an_equals_sign_in_it_reach_the_app(server):
    tcp, _ = server
    env = json.loads(answered("-e", "EMPTY=", "-e", "X.Y-Z=a=b", "-e", "TEXT=é\n", "--",
                              tcp, "/env"))
    assert env["EMPTY"] == "" and env["X.Y-Z"] == "a=b"
    assert env["TEXT"].encode("latin-1").decode("utf-8") == "é\n"


def test_a_non_ascii_uri_over_a_unix_socket_and_output_to_a_file_or_dash(server, tmp_path):
    _, path = server
    target = tmp_path / "a name with spaces"
    assert answered("-o", str(target), f"unix:{path}", "/status/200") == b""
    assert target.read_bytes() == b"status body\n"
    env = json.loads(answered("-o", "-", path, "/env/é?q=%20"))
    assert env["REQUEST_URI"].encode("latin-1").decode("utf-8") == "/env/é?q=%20"


def test_scgi_test_takes_the_edge_values(server):
    tcp, path = server
    port = tcp.rsplit(":", 1)[1]
    for args in (["--host", "127.0.0.1", "--port", port, "-m", "86400"],
                 ["--unix", path, "-m", "1e3"]):
        code, out, err = scgi_test(*args, "/status/201")
        assert code == 0, err
        assert out.startswith(b"Status: 201 Whatever\r\n")
