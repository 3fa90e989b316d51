"""``scgikit check``: the app loaded as a worker would load it, the options as serve builds
them, a report of both, and nothing listening."""

import json
import socket
import subprocess
import sys

import pytest
from servers import FIXTURES, child_env, free_port

pytestmark = pytest.mark.one_path(reason="scgikit check loads and reports; it serves nothing")


def check(*args, cwd=None, **env):
    return subprocess.run([sys.executable, "-m", "scgikit", "check", *args],
                          capture_output=True, text=True, timeout=60, env=child_env(**env),
                          cwd=cwd)


def test_a_good_wsgi_app_is_reported_with_its_model_and_addresses(tmp_path):
    result = check("wsgi_apps:hello", "--bind", "127.0.0.1:4000",
                   "--bind", f"unix:{tmp_path}/scgi.sock", "--workers", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("listen at: 127.0.0.1:4000\n"
                             f"listen at: unix:{tmp_path}/scgi.sock\n"
                             "app: wsgi_apps:hello (a WSGI app)\n"
                             "worker model: sync, 3 worker processes\n"
                             "ok\n")
    assert result.stderr == ""


def test_a_wsgi_app_with_threads_is_reported_on_the_threads_model():
    result = check("wsgi_apps:hello", "--threads", "8", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "worker model: threads, 2 worker processes of 8 threads each\n" in result.stdout


def test_a_good_asgi_app_is_reported_on_the_asyncio_model():
    result = check("asgi_apps:hello", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("listen at: 127.0.0.1:4000\n"
                             "app: asgi_apps:hello (an ASGI app)\n"
                             "worker model: asyncio, 1 worker process\n"
                             "ok\n")


def test_threads_for_an_asgi_app_are_a_warning_since_serve_ignores_them():
    result = check("asgi_apps:hello", "--threads", "4", "--workers", "1")
    assert result.returncode == 0
    assert result.stderr == ("scgikit check: warning: --threads 4 is ignored: an ASGI app runs "
                             "on the asyncio model, where one worker serves many requests at "
                             "once on its event loop\n")


def test_a_classic_handler_is_reported_and_refused_on_the_threads_model():
    assert "app: classic_handlers:Echo (a classic SCGIHandler)\n" in check(
        "classic_handlers:Echo").stdout
    result = check("classic_handlers:Echo", "--worker", "threads")
    assert result.returncode == 4
    assert result.stderr == ("scgikit check: error: cannot load the app: a classic SCGIHandler "
                             "swaps the process-wide stdin, stdout and os.environ "
                             "(produce_cgilike), so it runs on the sync model only: drop "
                             "--threads/--worker\n")
    assert "ok" not in result.stdout


def test_an_app_raising_at_import_is_named_with_its_exception_file_and_line(tmp_path):
    app = tmp_path / "failing.py"
    app.write_text("import os\n\nSETTINGS = os.environ['FAILING_SETTINGS']\n")
    result = check(f"{app}:app")
    assert result.returncode == 4
    assert result.stderr == (f"scgikit check: error: cannot load the app '{app}:app': "
                             f"KeyError: 'FAILING_SETTINGS' (at {app}, line 3)\n")
    assert "app:" not in result.stdout and "ok" not in result.stdout


def test_an_app_module_raising_importerror_is_named_with_its_line():
    result = check("broken_app:app")
    assert result.returncode == 4
    assert result.stderr == ("scgikit check: error: cannot load the app 'broken_app:app': "
                             "ImportError: this app cannot be imported "
                             f"(at {FIXTURES}/broken_app.py, line 1)\n")


def test_a_syntax_error_in_the_app_is_named_with_its_line(tmp_path):
    (tmp_path / "typo.py").write_text("def app(environ, start_response):\n    return [\n")
    result = check("typo:app", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.startswith("scgikit check: error: cannot load the app 'typo:app': "
                                    "SyntaxError: ")
    assert result.stderr.endswith(f"(at {tmp_path}/typo.py, line 2)\n")


def test_a_missing_module_is_named():
    result = check("no_such_module:app")
    assert result.returncode == 4
    assert result.stderr == ("scgikit check: error: cannot load the app: 'no_such_module:app': "
                             "no module named 'no_such_module'\n")


def test_an_app_calling_sys_exit_as_it_loads_is_reported_with_its_message():
    result = check("boot_apps:exit_on_load()")
    assert result.returncode == 4
    assert result.stderr == ("scgikit check: error: cannot load the app "
                             "'boot_apps:exit_on_load()': it exited: DATABASE_URL not set\n")


@pytest.mark.parametrize("args, message", [
    (["wsgi_apps:hello", "--workers", "0"], "--workers: 0 is out of range: 1 to 1024"),
    (["wsgi_apps:hello", "--bind", "::1:4000"], "--bind: '::1:4000': write IPv6 addresses in "
                                                 "brackets"),
    ([], 'no app to serve: give TARGET, or app = "module:app" in the --config file'),
])
def test_a_bad_option_is_one_line_and_status_2(args, message):
    result = check(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"scgikit check: error: {message}")
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_a_bad_setting_and_a_bad_app_give_status_2_and_both_errors():
    result = check("no_such_module:app", "--socket-owner", "no-such-user-here")
    assert result.returncode == 2
    assert result.stderr == ("scgikit check: error: --socket-owner: there is no user named "
                             "'no-such-user-here'\n"
                             "scgikit check: error: cannot load the app: 'no_such_module:app': "
                             "no module named 'no_such_module'\n")


def test_check_reads_the_config_file_and_its_app(tmp_path):
    (tmp_path / "scgikit.toml").write_text('app = "wsgi_apps:hello"\nworkers = 2\n'
                                           'bind = ["unix:app.sock"]\n')
    result = check("-c", "scgikit.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("config file: scgikit.toml\n"
                             "listen at: unix:app.sock\n"
                             "app: wsgi_apps:hello (a WSGI app)\n"
                             "worker model: sync, 2 worker processes\n"
                             "ok\n")
    (tmp_path / "scgikit.toml").write_text("workers = 'two'\n")
    result = check("wsgi_apps:hello", cwd=tmp_path, SCGIKIT_CONFIG="scgikit.toml")
    assert result.returncode == 2
    assert result.stderr == ("scgikit check: error: scgikit.toml: key 'workers': expected an "
                             'integer, got a string ("two")\n')


# An app that looks, as check imports it (when serve would be listening already), whether
# its address is free: it binds the port itself, and looks for the socket file.
LOOKING_APP = """\
import json, os, socket

def _tcp_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return str(exc)
        return "free"

with open(os.environ["LOOK_REPORT"], "w") as fh:
    json.dump({"tcp": _tcp_free(int(os.environ["LOOK_PORT"])),
               "socket_file": os.path.exists(os.environ["LOOK_SOCKET"])}, fh)

def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""


def test_check_never_listens_on_the_addresses_it_reports(tmp_path):
    (tmp_path / "looking.py").write_text(LOOKING_APP)
    port, sock_path, report = free_port(), tmp_path / "scgi.sock", tmp_path / "look.json"
    result = check("looking:app", "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{sock_path}",
                   cwd=tmp_path, LOOK_PORT=str(port), LOOK_SOCKET=str(sock_path),
                   LOOK_REPORT=str(report))
    assert result.returncode == 0, result.stderr
    assert f"listen at: 127.0.0.1:{port}\n" in result.stdout
    assert json.loads(report.read_text()) == {"tcp": "free", "socket_file": False}
    assert not sock_path.exists()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # still free after the check


def test_addresses_in_use_are_warnings_found_without_binding(tmp_path):
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        unix.bind(str(tmp_path / "busy.sock"))
        unix.listen()
        result = check("wsgi_apps:hello", "--bind", f"127.0.0.1:{port}",
                       "--bind", f"unix:{tmp_path}/busy.sock")
    assert result.returncode == 0
    assert result.stderr == (
        f"scgikit check: warning: 127.0.0.1:{port}: a socket of this machine already listens "
        "there; serve would fail to listen, unless that server stops first\n"
        f"scgikit check: warning: unix:{tmp_path}/busy.sock is in use by a running server; "
        "serve would refuse it\n")


def test_a_wildcard_port_already_taken_on_one_interface_is_a_warning():
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        result = check("wsgi_apps:hello", "--bind", f"0.0.0.0:{port}", "--allow-from",
                       "127.0.0.1")
    assert result.stderr == (
        f"scgikit check: warning: 0.0.0.0:{port}: a socket of this machine already listens "
        "there; serve would fail to listen, unless that server stops first\n")


def test_unix_socket_paths_serve_could_not_use_are_errors_as_in_serve(tmp_path):
    (tmp_path / "file").write_text("not a socket")
    result = check("wsgi_apps:hello", "--bind", f"unix:{tmp_path}/missing/scgi.sock",
                   "--bind", f"unix:{tmp_path}/file")
    assert result.returncode == 2
    assert result.stderr == (
        f"scgikit check: error: --bind: unix:{tmp_path}/missing/scgi.sock: the folder "
        f"{tmp_path}/missing does not exist\n"
        f"scgikit check: error: --bind: unix:{tmp_path}/file: exists and is not a socket; not "
        "replacing it\n")


def test_every_interface_without_allow_from_is_a_warning_as_in_serve():
    result = check("wsgi_apps:hello", "--bind", f"0.0.0.0:{free_port()}")
    assert result.returncode == 0
    assert "listens on every network interface, and SCGI has no authentication: admit only " \
           "the front end with --allow-from\n" in result.stderr


def test_check_help_lists_the_options_of_serve():
    result = subprocess.run([sys.executable, "-m", "scgikit", "check", "--help"],
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert result.returncode == 0
    for option in ("--config", "--bind", "--workers", "--threads", "SCGIKIT_CONFIG"):
        assert option in result.stdout
    assert "Exit status: 0 fine" in result.stdout


def as_unprivileged(*args):
    """``scgikit check`` as a user that is not root (nobody, when the tests run as root)."""
    import os
    import pwd

    if os.geteuid() != 0:
        return check(*args, cwd="/")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run the check as")
    try:
        return subprocess.run([sys.executable, "-m", "scgikit", "check", *args],
                              capture_output=True, text=True, timeout=60, env=child_env(),
                              cwd="/", user="nobody")
    except PermissionError:
        pytest.skip(f"the user 'nobody' cannot run {sys.executable}")


def test_a_privileged_port_is_a_warning_for_a_user_who_is_not_root():
    start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    if start < 2:
        pytest.skip("this kernel lets every user listen on any port")
    result = as_unprivileged("wsgi_apps:hello", "--bind", f"127.0.0.1:{start - 1}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"scgikit check: warning: 127.0.0.1:{start - 1}: ports below "
                             f"{start} need root; serve would fail to listen there\n")


def test_user_without_root_is_an_error_as_in_serve():
    result = as_unprivileged("wsgi_apps:hello", "--user", "nobody")
    assert result.returncode == 2
    assert result.stderr == ("scgikit check: error: --user/--group need the server to be "
                             "started as root\n")


def test_the_privileged_port_rule_follows_the_effective_user(monkeypatch):
    # The subprocess tests above need an interpreter another user can run; this one holds
    # wherever the tests run: the same check, as uid 1000 and as root.
    from scgikit.addresses import parse_address
    from scgikit.config import Config
    from scgikit.master.check import _address_warnings

    start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    if start < 2:
        pytest.skip("this kernel lets every user listen on any port")
    address = parse_address(f"127.0.0.1:{start - 1}")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert _address_warnings(address, Config(), set()) == [
        f"127.0.0.1:{start - 1}: ports below {start} need root; serve would fail to listen there"]
    assert _address_warnings(parse_address(f"127.0.0.1:{start}"), Config(), set()) == []
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert _address_warnings(address, Config(), set()) == []


def test_a_chdir_that_fails_is_an_error_with_status_2(tmp_path):
    result = check("wsgi_apps:hello", "--chdir", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert result.stderr == f"scgikit check: error: --chdir: {tmp_path}/absent: no such folder\n"


def test_systemd_sockets_are_reported_without_being_touched():
    result = check("wsgi_apps:hello", LISTEN_FDS="2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("listen at: the 2 socket(s) systemd passes (LISTEN_FDS)\n")


def test_an_fd_address_that_is_not_an_open_socket_is_an_error_as_in_serve(tmp_path):
    result = check("wsgi_apps:hello", "--bind", "fd://99")
    assert result.returncode == 2
    assert result.stderr == ("scgikit check: error: --bind: fd://99: not an open socket: Bad "
                             "file descriptor\n")
    with open(tmp_path / "file", "w") as fh:
        fd = fh.fileno()
        result = subprocess.run(
            [sys.executable, "-m", "scgikit", "check", "wsgi_apps:hello", "--bind", f"fd://{fd}"],
            capture_output=True, text=True, timeout=60, env=child_env(), pass_fds=[fd])
    assert result.returncode == 2
    assert result.stderr == f"scgikit check: error: --bind: fd://{fd}: not a socket\n"
