"""The logs of a real server: --access-log-format and --log-format json.

Access lines are checked whole, over TCP and unix sockets, on every worker model (the
ASGI twin of each app on asyncio: tests/servers.py); JSON error logs are checked line by
line, from the start-up lines to an app's traceback and the shutdown.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from scgi_raw import request
from servers import child_env, wait_until, worker_pids

from scgikit.accesslog import ACCESS_FIELDS, Access, access_fields_table, compile_access_format
from scgikit.config import Config, ConfigError

ROOT = Path(__file__).parent.parent

FIELDS = ("{method} {uri} {protocol} {status} {bytes_sent} {header:x-request-id} "
          "{var:SERVER_NAME} {worker} {remote_addr} {remote_user}")
DEFAULT_LINE = re.compile(
    r'^192\.0\.2\.7 - alice \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"GET /logged\?x=1 HTTP/1\.1" 200 (\d+) "https://example\.com/from" '
    r'"Mozilla/5\.0 \(test\)" (\d+\.\d{6}) pid=(\d+)$')
CLIENT = {"REMOTE_ADDR": "192.0.2.7", "REMOTE_USER": "alice",
          "HTTP_REFERER": "https://example.com/from", "HTTP_USER_AGENT": "Mozilla/5.0 (test)"}


def access_lines(path, count):
    """The access log's lines, once it has ``count`` of them."""
    def enough():
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= count else None

    return wait_until(enough, message=f"{count} lines in {path}")


def json_records(server):
    """Every stderr line of ``server`` (stopped), each parsed as JSON."""
    lines = [line for line in server.lines if line != "<stderr closed>"]
    assert lines
    return [json.loads(line) for line in lines]


def tcp_or_unix_address(server, transport):
    """The address a --log-format json server listens at (its log line is JSON)."""
    if transport.startswith("unix:"):
        return transport
    (match,) = server.wait_for_log(r'"message": "Listening at: ([^"]+)"')
    return match.group(1)


# --- access lines ----------------------------------------------------------------------------

def test_a_custom_access_format_writes_exactly_its_fields(serve, model, transport, tmp_path):
    log = tmp_path / "access.log"
    server = serve("wsgi_apps:hello", "--workers", "1", "--access-log", str(log),
                   "--access-log-format", FIELDS, bind=[transport])
    answer = request(server.address, "/logged?x=1",
                     env={"REMOTE_ADDR": "192.0.2.7", "HTTP_X_REQUEST_ID": "req-7"})
    (line,) = access_lines(log, 1)
    assert line == f"GET /logged?x=1 HTTP/1.1 200 {len(answer.raw)} req-7 test {model} 192.0.2.7 -"


def test_the_access_line_has_the_status_and_method_the_app_answered(serve, model, transport,
                                                                     tmp_path):
    log = tmp_path / "access.log"
    server = serve("wsgi_apps:exc_info_replaces", "--workers", "1", "--access-log", str(log),
                   "--access-log-format", "{request} {status} {bytes_sent}", bind=[transport])
    answer = request(server.address, "/replace", method="POST", body=b"x" * 10)
    assert answer.status == 503
    assert access_lines(log, 1) == [f"POST /replace HTTP/1.1 503 {len(answer.raw)}"]


def assert_default_line(server, log):
    """A request's line in the default format: its byte count, and a worker's pid."""
    answer = request(server.address, "/logged?x=1", env=CLIENT)
    (line,) = access_lines(log, 1)
    match = DEFAULT_LINE.match(line)
    assert match, line
    assert int(match.group(1)) == len(answer.raw)
    assert int(match.group(3)) in worker_pids(server.pid)


def test_the_default_access_format_is_nginx_combined_then_request_time_and_pid(
        serve, model, transport, tmp_path):
    log = tmp_path / "access.log"
    server = serve("wsgi_apps:hello", "--workers", "1", "--access-log", str(log),
                   bind=[transport])
    assert_default_line(server, log)


def test_combined_is_exactly_nginx_combined_fields(serve, model, tmp_path):
    log = tmp_path / "access.log"
    server = serve("wsgi_apps:hello", "--workers", "1", "--access-log", str(log),
                   "--access-log-format", "combined")
    answer = request(server.address, "/logged?x=1", env=CLIENT)
    (line,) = access_lines(log, 1)
    assert re.fullmatch(
        r'192\.0\.2\.7 - alice \[[^\]]+\] "GET /logged\?x=1 HTTP/1\.1" 200 '
        rf'{len(answer.raw)} "https://example\.com/from" "Mozilla/5\.0 \(test\)"', line), line


def test_quotes_backslashes_and_other_bytes_from_the_client_are_escaped_as_nginx_does(
        serve, model, transport, tmp_path):
    log = tmp_path / "access.log"
    server = serve("wsgi_apps:hello", "--workers", "1", "--access-log", str(log),
                   "--access-log-format", '"{user_agent}" "{header:x-note}"', bind=[transport])
    request(server.address, "/", env={"HTTP_USER_AGENT": 'say "hi" \\ caf\xe9',
                                      "HTTP_X_NOTE": "one\ttwo\x7f"})
    assert access_lines(log, 1) == [r'"say \x22hi\x22 \x5C caf\xE9" "one\x09two\x7F"']


def test_json_access_lines_hold_every_field_with_numbers_as_numbers(serve, model, transport):
    server = serve("wsgi_apps:hello", "--workers", "1", "--access-log", "-",
                   "--access-log-format", "json", "--log-format", "json", bind=[transport])
    address = tcp_or_unix_address(server, transport)
    answer = request(address, "/logged?x=1",
                     env={"REMOTE_ADDR": "192.0.2.7", "HTTP_USER_AGENT": 'a "b"\n'})
    (match,) = server.wait_for_log(r'^\{"remote_addr": ')
    entry = json.loads(match.string)
    assert set(entry) == set(ACCESS_FIELDS)
    assert entry["request"] == "GET /logged?x=1 HTTP/1.1"
    assert (entry["status"], entry["bytes_sent"]) == (200, len(answer.raw))
    assert (entry["remote_addr"], entry["user_agent"], entry["worker"]) == (
        "192.0.2.7", 'a "b"\n', model)
    assert entry["remote_user"] is None and entry["referer"] is None
    assert entry["pid"] in worker_pids(server.pid)
    assert isinstance(entry["request_time"], float)
    datetime.fromisoformat(entry["time_iso8601"])
    server.stop()
    json_records(server)  # the error log's lines and the access line: all JSON


# --- the error log in JSON -----------------------------------------------------------------

def assert_json_error_log(records, master, secret):
    for entry in records:
        assert set(entry) <= {"time", "level", "pid", "logger", "message", "exception"}, entry
        assert {"time", "level", "pid", "logger", "message"} <= set(entry), entry
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
        assert entry["logger"].startswith("scgikit"), entry
    messages = [entry["message"] for entry in records]
    assert any(m.startswith("Listening at: ") for m in messages), messages
    assert any(entry["pid"] == master for entry in records)
    (failure,) = [entry for entry in records if "exception" in entry]
    assert failure["level"] == "ERROR" and failure["pid"] != master
    assert failure["exception"].startswith("Traceback (most recent call last):\n")
    assert failure["exception"].endswith(f"RuntimeError: {secret}")


def test_json_error_log_lines_all_parse_from_start_to_an_app_traceback_to_stop(
        serve, model, transport):
    server = serve("wsgi_apps:error", "--workers", "1", "--log-format", "json",
                   "--log-level", "debug", bind=[transport])
    assert request(tcp_or_unix_address(server, transport), "/").status == 500
    server.wait_for_log(r'"exception": "Traceback')
    assert server.stop(signal.SIGTERM) == 0
    assert_json_error_log(json_records(server), server.pid,
                          "secret detail that must not reach the client")


# --- operator mistakes ---------------------------------------------------------------------

def serve_argv(*args):
    return subprocess.run([sys.executable, "-m", "scgikit", "serve", "wsgi_apps:hello",
                           "--bind", "127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=60, env=child_env())


def test_an_unknown_access_log_field_is_a_one_line_error_naming_it():
    result = serve_argv("--access-log", "-", "--access-log-format", "{remote_addr} {nope}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "scgikit serve: --access-log-format: unknown field {nope}; the fields are "
        + ", ".join([*ACCESS_FIELDS, "var:NAME", "header:NAME"])]


def test_an_unknown_log_format_is_a_one_line_error():
    result = serve_argv("--log-format", "yaml")
    assert result.returncode == 2
    assert result.stderr == "scgikit serve: --log-format: 'yaml': expected text or json\n"


@pytest.mark.parametrize("text, message", [
    ("{", "Single '{' encountered in format string (write {{ and }} for a literal brace)"),
    ("{status:x}", "{status:x}: only var and header take a name"),
    ("{var}", "{var:} needs a name, as in {var:NAME}"),
    ("{header:a b}", "{header:a b} needs a name, as in {header:NAME}"),
    ("{status!r}", "{status!r}: conversions are not supported"),
])
def test_a_malformed_access_log_format_names_what_is_wrong(text, message):
    with pytest.raises(ConfigError) as caught:
        Config(access_log_format=text)
    assert str(caught.value) == f"--access-log-format: {message}"


def test_docs_list_every_access_log_field():
    assert access_fields_table() in (ROOT / "docs" / "server.md").read_text()


def test_literal_braces_and_percent_signs_pass_through_a_format():
    access = Access({"REQUEST_METHOD": "GET"}, "404 Not Found", 12, time.monotonic(), "sync")
    line = compile_access_format("{{{status}}} 100% %s {method}").line(access, time.time(), 1)
    assert line == "{404} 100% %s GET"


def test_an_access_record_read_without_the_formatter_is_the_default_line():
    access = Access({"REMOTE_ADDR": "192.0.2.7", "REMOTE_USER": "alice", "REQUEST_METHOD": "GET",
                     "REQUEST_URI": "/logged?x=1", "SERVER_PROTOCOL": "HTTP/1.1",
                     "HTTP_REFERER": "https://example.com/from",
                     "HTTP_USER_AGENT": "Mozilla/5.0 (test)"}, "200 OK", 68, time.monotonic(),
                    "sync")
    match = DEFAULT_LINE.match(str(access))
    assert match and match.group(1) == "68" and match.group(3) == str(os.getpid())
