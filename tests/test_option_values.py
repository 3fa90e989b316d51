"""Every value a user types for ``serve`` and ``check`` is checked once, the same way.

For every option of the field table, Hypothesis makes wrong values (wrong type, out of
range, empty, huge, with spaces, NUL, newlines, bytes that are not UTF-8) and gives each
through each source: the flag, the ``SCGIKIT_*`` variable, the configuration file's key.
``scgikit check`` and ``scgikit serve`` each run in a child forked from this process
(``cli.main``, as the console script calls it): each must exit 2 with one line and no
traceback, and both must say the same thing.  A serve that starts where check refused
is caught by the deadline, and stopped.

The known cases of the issue that asked for this follow, each through the real command.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import child_env, free_port

import scgikit.master.arbiter  # noqa: F401 - imported once here, not in every child
import scgikit.master.check  # noqa: F401
from scgikit import cli, option_kinds
from scgikit.config import env_name, file_key, option_fields
from scgikit.option_kinds import MAX_SECONDS, MAX_SIZE

pytestmark = pytest.mark.one_path(reason="option values are checked by Config and preflight, "
                                         "which have no C twin")

TARGET = "wsgi_apps:hello"
FIELDS = {f.name: f for f in option_fields()}
PURE = os.environ.get("SCGIKIT_PURE", "") not in ("", "0")
# The values are checked by Python on both paths: the pure run takes a smaller sample.
EXAMPLES = 2 if PURE else 6
# What a child may take before it is deemed started (a serve that should have refused).
DEADLINE = 20.0

# --- wrong values, by kind ---------------------------------------------------------------

CONTROL = st.sampled_from(["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\u2028", "\udcff"])
GARBAGE = st.text(alphabet=string.ascii_letters + " !#$%&*;<>?@^`|~", min_size=1, max_size=12)


def with_control(valid: str) -> st.SearchStrategy[str]:
    """A valid value with a control character, a line break or a non-UTF-8 byte in it."""
    return st.tuples(st.integers(0, len(valid)), CONTROL).map(
        lambda cut: valid[:cut[0]] + cut[1] + valid[cut[0]:])


def numbers_outside(low: int, high: int) -> st.SearchStrategy[str]:
    below = st.integers(max_value=low - 1).map(str)
    above = st.integers(min_value=high + 1, max_value=high * 10**30 + 10).map(str)
    return st.one_of(below, above)


def counts(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(numbers_outside(low, high), GARBAGE, st.just(""), st.just("1.5"),
                     st.just("nan"), st.just("1e3"), st.just("٣"), st.just(" 2"))


def durations() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(max_value=-0.001).map(repr), st.floats(min_value=MAX_SECONDS + 1).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "", "1s", "10m", "1e999", "0x10", "1_0"]), GARBAGE)


def sizes() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(max_value=-1).map(str), st.integers(min_value=MAX_SIZE + 1).map(str),
        st.sampled_from(["", "k", "-1k", "1.5m", "10x", "1t", "2048g", "١٠"]), GARBAGE)


def modes() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(min_value=0o1000, max_value=0o777777).map(lambda n: f"{n:o}"),
                     st.sampled_from(["-1", "8", "0669", "", "rw", "0o", "0x1ff", "7777"]),
                     GARBAGE)


def not_in(choices: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(GARBAGE, st.sampled_from(["", "none", "SYNC2", "ws gi"])).filter(
        lambda text: text.lower() not in choices)


NO_HOSTS = st.sampled_from([
    "http://127.0.0.1:5103", "https://example.org/", "app/x.sock:4000", "my host:4000",
    "127.0.0.1:65536", "127.0.0.1:-1", "h:4000x", "[::1", "[nothost]:4000", "::1:4000",
    "unix:", "fd://x", "fd://-1", "fd://99999999999", "", "/" + "a" * 120, "a" * 300 + ":1",
    "host_:", "[::1]4000", "éxample.org:4000",
])


def addresses() -> st.SearchStrategy[str]:
    return st.one_of(NO_HOSTS, with_control("127.0.0.1:4000"), with_control("/tmp/app.sock"))


def missing_paths() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=12).map(
            lambda name: f"/nonexistent-folder/{name}"), with_control("/tmp/x.pid"))


def not_files() -> st.SearchStrategy[str]:
    return st.one_of(missing_paths(), st.just("/"), st.just("/tmp"))


def not_folders() -> st.SearchStrategy[str]:
    return st.one_of(missing_paths(), st.just("/etc/hostname"))


def unknown_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10).map(
            lambda name: "nosuch" + name), with_control("nobody"))


WRONG: dict[str, st.SearchStrategy[str]] = {
    "config_file": not_files(),
    "bind": addresses(),
    "socket_mode": modes(),
    "interface": not_in(FIELDS["interface"].metadata["choices"]),
    "worker": not_in(FIELDS["worker"].metadata["choices"]),
    "lifespan": not_in(FIELDS["lifespan"].metadata["choices"]),
    "loop": not_in(FIELDS["loop"].metadata["choices"]),
    "log_level": not_in(FIELDS["log_level"].metadata["choices"]),
    "log_format": not_in(FIELDS["log_format"].metadata["choices"]),
    "allow_from": st.one_of(st.sampled_from(["300.1.1.1", "abc", "10.0.0.0/33", "::1/129",
                                             "10.0.0.1/8x", ""]), with_control("10.0.0.0/8")),
    "socket_owner": st.one_of(unknown_names(), st.sampled_from([":root", "root:", "a:b:c", ""])),
    "script_name": st.one_of(st.sampled_from(["app", "/app/", "app/", "//"]),
                             with_control("/app")),
    "access_log": not_files(),
    "access_log_format": st.one_of(st.sampled_from(["{nosuchfield}", "{", "}", "{status",
                                                    "{status!r}", "{status:>9999999999}"]),
                                   with_control("{status}")),
    "pid_file": not_files(),
    "chdir": not_folders(),
    "env": st.one_of(st.sampled_from(["NOVALUE", "=value", "=", ""]), with_control("KEY=value")),
    "user": unknown_names(),
    "group": unknown_names(),
    "http": st.one_of(addresses(), st.just("/tmp/gateway.sock"), st.just("fd://3")),
    "reload_dir": not_folders(),
    "reload_include": with_control("*.py"),
    "reload_exclude": with_control("*.tmp"),
    "stats": addresses(),
    "session_pattern": st.one_of(st.sampled_from(["(", "session=(?P<sid>.*)", "[a-", "x"]),
                                 with_control("(?P<id>x)")),
}
for _f in option_fields():
    _meta = _f.metadata
    if _f.name in WRONG:
        continue
    if _meta["parse"] is option_kinds.count:
        WRONG[_f.name] = counts(*map(int, _meta["limits"]))
    elif _meta["parse"] is option_kinds.seconds:
        WRONG[_f.name] = durations()
    elif _meta["parse"] is option_kinds.size:
        WRONG[_f.name] = sizes()
    elif _meta["switch"]:  # a switch's variable or key: anything but a yes or a no
        WRONG[_f.name] = GARBAGE.filter(lambda t: t.strip().lower() not in (
            "1", "yes", "true", "on", "0", "no", "false", "off"))

#: Options that only mean something with another: given with it, so that the value is at fault.
COMPANIONS = {"reload_dir": ["--reload"], "reload_include": ["--reload"],
              "reload_exclude": ["--reload"], "session_pattern": ["--session-affinity"],
              "session_queue": ["--session-affinity"]}


def test_every_option_has_wrong_values_to_try():
    assert set(WRONG) == set(FIELDS)


# --- running the commands ------------------------------------------------------------------


def run(argv: list[str], environ: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``scgikit ARGV`` in a forked child: (exit status, stdout, stderr); -1 when it was
    still running at the deadline (it was then killed, with its process group)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.setpgid(0, 0)
            os.chdir(cwd)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False, errors="backslashreplace")
            sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")
            os.environ.clear()
            os.environ.update(environ)
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    deadline = time.monotonic() + DEADLINE
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.005)
    else:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    out = _drain(out_r)
    err = _drain(err_r)
    return (os.waitstatus_to_exitcode(status) if status is not None and done else -1), out, err


def _drain(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "backslashreplace")


def base_environ() -> dict[str, str]:
    return {name: value for name, value in child_env().items()
            if not name.startswith(("SCGIKIT_", "LISTEN_"))}


def toml_value(f, text: str) -> str:
    """``text`` as the file would hold it: a number where the option takes one and the
    text reads as one, else a string (an array of one for a repeatable option)."""
    kind = f.metadata["kind"]
    if f.metadata["switch"]:
        value = text
    else:
        try:
            number = int(text) if kind.types[0] is int and text.lstrip("-").isascii() \
                and text.lstrip("-").isdigit() else None
        except ValueError:
            number = None
        value = number if number is not None and abs(number) < 2**63 else text
    if isinstance(value, int):
        return str(value)
    quoted = json.dumps(value, ensure_ascii=False)
    return f"[{quoted}]" if f.metadata["repeat"] else quoted


def given_as(f, text: str, source: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """The arguments and variables that give option ``f`` the value ``text`` from ``source``."""
    args = ["--bind", f"unix:{folder}/scgi.sock"] if f.name != "bind" else []
    args += COMPANIONS.get(f.name, [])
    if source == "flag":
        return [*args, f"{f.metadata['flags'][-1]}={text}"], {}
    if source == "environment":  # a repeatable option's variable is split as a shell splits
        return args, {env_name(f.name): shlex.quote(text) if f.metadata["repeat"] else text}
    path = folder / "scgikit.toml"
    path.write_bytes(f"{file_key(f)} = {toml_value(f, text)}\n".encode("utf-8",
                                                                        "surrogateescape"))
    return [*args, "--config", str(path)], {}


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def refused_alike(f, text: str, source: str, folder: Path) -> None:
    args, env = given_as(f, text, source, folder)
    environ = base_environ() | env
    code, out, err = run(["check", TARGET, *args], environ, folder)
    assert code == 2, (code, out, err)
    said = one_line(err)
    assert said.startswith("scgikit check: error: "), said
    code, out, err = run(["serve", TARGET, *args], environ, folder)
    assert code == 2, (code, out, err)
    assert out == ""
    assert one_line(err).removeprefix("scgikit serve: ") == \
        said.removeprefix("scgikit check: error: ")
    assert sorted(p.name for p in folder.iterdir()) == (
        ["scgikit.toml"] if source == "file" else []), "something was left behind"


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
SWITCHES = {f.name for f in option_fields() if f.metadata["switch"]}
ON_THE_COMMAND_LINE = sorted(set(FIELDS) - SWITCHES)
IN_THE_FILE = sorted(name for name, f in FIELDS.items() if f.metadata["in_file"])


def _fresh(tmp_path: Path) -> Path:
    folder = Path(tmp_path) / f"run{time.monotonic_ns()}"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("name", ON_THE_COMMAND_LINE)
def test_a_wrong_flag_value_is_one_line_status_2_and_check_agrees_with_serve(name, tmp_path):
    @SETTINGS
    @given(WRONG[name])
    def each(text):
        refused_alike(FIELDS[name], text, "flag", _fresh(tmp_path))

    each()


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_wrong_variable_is_one_line_naming_it_and_check_agrees_with_serve(name, tmp_path):
    @SETTINGS
    @given(WRONG[name].filter(lambda text: "\x00" not in text))  # no variable holds a NUL
    def each(text):
        folder = _fresh(tmp_path)
        refused_alike(FIELDS[name], text, "environment", folder)

    each()


@pytest.mark.parametrize("name", IN_THE_FILE)
def test_a_wrong_file_value_is_one_line_naming_the_key_and_check_agrees_with_serve(name,
                                                                                    tmp_path):
    @SETTINGS
    @given(WRONG[name])
    def each(text):
        refused_alike(FIELDS[name], text, "file", _fresh(tmp_path))

    each()


# --- the cases that asked for it, through the real command -----------------------------------


def scgikit(*args, cwd=None, **env):
    return subprocess.run([sys.executable, "-m", "scgikit", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=child_env(**env))


@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize(("args", "env", "message"), [
    (["--socket-mode", "-1"], {}, "--socket-mode: '-1' is not an octal file mode such as 0660"),
    (["--socket-mode", "7777"], {}, "--socket-mode: 07777 is out of range: 0 to 0777"),
    (["--worker", "sync", "--threads", "4"], {},
     "--threads: 4 needs --worker threads: the sync model runs one request at a time per "
     "process; drop --threads, or --worker"),
    (["--bind", "http://127.0.0.1:5103"], {},
     "--bind: 'http://127.0.0.1:5103': an SCGI address is HOST:PORT or a unix path, not a URL"),
    ([], {"SCGIKIT_WORKERS": "abc"}, "SCGIKIT_WORKERS: 'abc' is not a whole number"),
    ([], {"SCGIKIT_BIND": "/srv/my app/x.sock"},
     "SCGIKIT_BIND: 'app/x.sock': 'app/x.sock' is not a host name or an IP address (a unix "
     "socket path starts with /, ./ or ../, or unix:)"),
    (["--http", "127.0.0.1:4000"], {},
     "--http: '127.0.0.1:4000' is also --bind: each needs its own socket"),
    (["--timeout", "nan"], {}, "--timeout: 'nan' is not a number of seconds such as 30 or 0.5"),
    (["--max-requests-jitter", "10"], {}, "--max-requests-jitter: applies only with "
                                          "--max-requests"),
    (["--worker", "threads", "--max-concurrency", "64"], {},
     "--max-concurrency: applies to the asyncio model, not --worker threads"),
])
def test_the_mistakes_users_made_are_one_line_and_status_2(command, args, env, message):
    result = scgikit(command, TARGET, *args, **env)
    assert result.returncode == 2
    said = "scgikit check: error: " if command == "check" else "scgikit serve: "
    assert result.stderr == f"{said}{message}\n"


@pytest.mark.parametrize("command", ["serve", "check"])
def test_what_serve_refuses_on_this_machine_check_refuses_too(command, tmp_path):
    long_path = f"{tmp_path}/{'a' * (120 - len(str(tmp_path)))}.sock"
    cases = [
        (["--bind", long_path], f"--bind: '{long_path}': the unix socket path is"),
        (["--bind", "127.0.0.1:0", "--socket-owner", "nosuchuser"],
         "--socket-owner: there is no user named 'nosuchuser'"),
        (["--bind", "127.0.0.1:0", "--pid", f"{tmp_path}/missing/x.pid"],
         f"--pid: {tmp_path}/missing/x.pid: the folder {tmp_path}/missing does not exist"),
        (["--bind", "127.0.0.1:0", "--access-log", f"{tmp_path}/missing/a.log"],
         f"--access-log: {tmp_path}/missing/a.log: the folder {tmp_path}/missing does not "
         "exist"),
    ]
    said = "scgikit check: error: " if command == "check" else "scgikit serve: "
    for args, message in cases:
        result = scgikit(command, TARGET, *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith(said + message), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_a_pid_file_that_cannot_be_written_leaves_no_socket_file_behind(tmp_path):
    result = scgikit("serve", TARGET, "--bind", f"unix:{tmp_path}/scgi.sock", "--pid",
                     f"{tmp_path}/missing/x.pid")
    assert result.returncode == 2
    assert result.stderr == (f"scgikit serve: --pid: {tmp_path}/missing/x.pid: the folder "
                             f"{tmp_path}/missing does not exist\n")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_start_leaves_another_servers_pid_file_alone(tmp_path):
    pid_file = tmp_path / "app.pid"
    pid_file.write_text("12345\n")
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = scgikit("serve", TARGET, "--bind", f"127.0.0.1:{port}", "--pid", str(pid_file))
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert pid_file.read_text() == "12345\n"


def test_a_path_with_spaces_is_quoted_in_a_variable_as_in_a_shell(tmp_path):
    (tmp_path / "my app").mkdir()
    result = scgikit("check", TARGET, SCGIKIT_BIND=f'"{tmp_path}/my app/x.sock" 127.0.0.1:0')
    assert result.returncode == 0, result.stderr
    assert f"listen at: unix:{tmp_path}/my app/x.sock\nlisten at: 127.0.0.1:0\n" in result.stdout
    result = scgikit("check", TARGET, SCGIKIT_BIND=f'"{tmp_path}/x.sock')
    assert result.returncode == 2
    assert result.stderr == ("scgikit check: error: SCGIKIT_BIND: no closing quotation: values "
                             "are separated by spaces, and one that holds a space is quoted, as "
                             "in a shell\n")


def test_a_mode_written_as_a_toml_number_gets_a_hint(tmp_path):
    (tmp_path / "scgikit.toml").write_text("socket-mode = 0660\n")
    result = scgikit("check", TARGET, "-c", "scgikit.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "scgikit check: error: scgikit.toml:1: not valid TOML: Expected newline or end of "
        'document after a statement (column 16): write a file mode as a string, socket-mode = '
        '"0660"\n')


def test_options_that_go_together_in_one_file_are_checked_together(tmp_path):
    (tmp_path / "scgikit.toml").write_text(
        f'app = "{TARGET}"\nreload = true\nreload-dir = ["{tmp_path}"]\nbind = ["127.0.0.1:0"]\n')
    result = scgikit("check", "-c", "scgikit.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (tmp_path / "scgikit.toml").write_text(f'reload-dir = ["{tmp_path}"]\n')
    result = scgikit("check", TARGET, "-c", "scgikit.toml", cwd=tmp_path)
    assert result.stderr == ("scgikit check: error: scgikit.toml: key 'reload-dir': applies "
                             "only with --reload\n")


def test_a_dotted_target_is_told_the_module_attribute_form(tmp_path):
    result = scgikit("check", "wsgi_apps.hello", "--bind", "127.0.0.1:0")
    assert result.returncode == 4
    assert result.stderr == ("scgikit check: error: cannot load the app: 'wsgi_apps.hello': no "
                             "module named 'wsgi_apps.hello'; TARGET is MODULE:ATTRIBUTE: did "
                             "you mean wsgi_apps:hello?\n")


def test_an_http_gateway_address_that_is_busy_fails_the_start_and_leaves_nothing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = scgikit("serve", TARGET, "--bind", f"unix:{tmp_path}/scgi.sock", "--http",
                         f"127.0.0.1:{port}", "--pid", f"{tmp_path}/app.pid")
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == (
            f"scgikit serve: --http: cannot listen on 127.0.0.1:{port}: Address already in use")
        checked = scgikit("check", TARGET, "--bind", f"unix:{tmp_path}/scgi.sock", "--http",
                          f"127.0.0.1:{port}")
    assert list(tmp_path.iterdir()) == []
    assert f"HTTP gateway at: 127.0.0.1:{port}\n" in checked.stdout
    assert checked.stderr == (f"scgikit check: warning: --http 127.0.0.1:{port}: a socket of "
                              "this machine already listens there; serve would fail to start, "
                              "unless it stops first\n")


@pytest.mark.parametrize(("http", "message"), [
    ("unix:/tmp/gateway.sock", "--http: 'unix:/tmp/gateway.sock': the gateway speaks HTTP to a "
                               "browser, over TCP: give HOST:PORT"),
    ("127.0.0.1:{port}", "--http: '127.0.0.1:{port}' is also --bind: each needs its own socket"),
])
def test_an_http_gateway_address_that_cannot_be_the_gateways_is_refused(http, message):
    port = free_port()
    result = scgikit("serve", TARGET, "--bind", f"127.0.0.1:{port}", "--http",
                     http.format(port=port))
    assert result.returncode == 2
    assert result.stderr == f"scgikit serve: {message.format(port=port)}\n"


@pytest.mark.parametrize("mode", ["-1", "7777", "4660", "0o1000", "8", "0668"])
@pytest.mark.parametrize("source", ["flag", "environment", "file"])
def test_a_socket_mode_outside_0_to_0777_is_refused_from_every_source(mode, source, tmp_path):
    args, env = given_as(FIELDS["socket_mode"], mode, source, tmp_path)
    result = scgikit("serve", TARGET, *args, **env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    where = {"flag": "--socket-mode", "environment": "SCGIKIT_SOCKET_MODE",
             "file": f"{tmp_path}/scgikit.toml: key 'socket-mode'"}[source]
    assert result.stderr.startswith(f"scgikit serve: {where}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["scgikit.toml"] if source == "file" else [])


@pytest.mark.parametrize(("keywords", "message"), [
    ("max_children=0", "SCGIServer max_children: 0 is out of range: 1 to 1024"),
    ("port=4000, timeout=float('nan')", "SCGIServer timeout: nan is out of range: 0 to 31536000"),
    ("host='my host'", "SCGIServer host/port: 'my host:4000': 'my host' is not a host name or "
                       "an IP address (a unix socket path starts with /, ./ or ../, or unix:)"),
    ("bind=['/nonexistent-folder/x.sock']", "SCGIServer bind: /nonexistent-folder/x.sock: the "
                                            "folder /nonexistent-folder does not exist"),
])
def test_the_classic_servers_keywords_are_checked_as_the_options_are(keywords, message):
    code = f"from scgikit.scgi_server import SCGIServer\nSCGIServer({keywords}).serve()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=child_env())
    assert result.returncode == 2
    assert result.stderr == f"scgikit: {message}\n"
