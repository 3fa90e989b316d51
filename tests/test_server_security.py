"""Nobody gets in where they don't belong: who may reach the server, and what it tells them.

SCGI has no authentication, so the server's defences are where it listens, who
may open its socket file, and which peers it serves (docs/security.md).  These
tests run real servers; they connect only to 127.0.0.1 and unix sockets.
"""

import ast
import grp
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from scgi_raw import connect, read_all, request
from servers import ServerProcess, app_source, child_env

from scgikit.config import Config, ConfigError
from scgikit.master import listeners as sockets
from scgikit.master.listeners import is_wildcard, socket_owner
from scgikit.protocol import encode_request

ROOT = Path(__file__).parent.parent
WARNING = "listens on every network interface, and SCGI has no authentication"

as_root = pytest.mark.skipif(os.geteuid() != 0,
                             reason="only root can give a socket file to another user or group")


def existing_user(*names):
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip(f"none of the users {names} exists here")


def existing_groups(*names, count=1):
    found = []
    for name in names:
        try:
            found.append(grp.getgrnam(name))
        except KeyError:
            continue
    if len(found) < count:
        pytest.skip(f"fewer than {count} of the groups {names} exist here")
    return found[:count]


def owner_and_mode(path):
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def started(server):
    """The log once the master has opened its sockets and begun starting workers."""
    server.wait_for_log(r"Master \d+ starting")
    return server.log


def tcp_port(server):
    return int(server.address.rsplit(":", 1)[1])


def run_serve(*args):
    return subprocess.run([sys.executable, "-m", "scgikit", "serve", "wsgi_apps:hello", *args],
                          capture_output=True, text=True, timeout=60, env=child_env())


# --- why: the backend believes its peer ---------------------------------------------------


def test_backend_believes_every_variable_its_peer_sends(serve, model):
    # The peer is 127.0.0.1, not a front end, yet the app sees what it claims: in the WSGI
    # environ, or in the ASGI scope on asyncio (an app of its own, the scope as JSON).
    server = serve("wsgi_apps:environ_json", asgi="asgi_apps:scope_json")
    answer = request(server.address, "/", env={"REMOTE_ADDR": "203.0.113.66", "HTTPS": "on",
                                               "REMOTE_USER": "admin"})
    if model == "asyncio":
        scope = json.loads(answer.body)
        assert scope["client"] == ["203.0.113.66", 0]
        assert scope["extensions"]["scgi"]["variables"]["REMOTE_USER"] == "admin"
        assert scope["scheme"] == "https"
        return
    environ = json.loads(answer.body)
    assert environ["REMOTE_ADDR"] == "203.0.113.66"
    assert environ["REMOTE_USER"] == "admin"
    assert environ["wsgi.url_scheme"] == "https"


# --- listening on every interface ---------------------------------------------------------


def test_wildcard_bind_warns_that_scgi_has_no_authentication(serve):
    server = serve("wsgi_apps:hello", bind=["0.0.0.0:0"])
    assert server.address.startswith("0.0.0.0:")
    [warning] = server.wait_for_log(rf"\[WARNING\] {re.escape(server.address)} {WARNING}")
    line = warning.string
    for advice in ("REMOTE_ADDR", "127.0.0.1", "unix socket", "--allow-from"):
        assert advice in line
    assert request(f"127.0.0.1:{tcp_port(server)}", "/").body == b"hello"


def test_loopback_bind_gives_no_wildcard_warning(serve):
    log = started(serve("wsgi_apps:hello", bind=["127.0.0.1:0"]))
    assert WARNING not in log


def test_wildcard_bind_with_allow_from_gives_no_warning(serve):
    server = serve("wsgi_apps:hello", "--allow-from", "127.0.0.0/8", bind=["0.0.0.0:0"])
    assert WARNING not in started(server)
    assert request(f"127.0.0.1:{tcp_port(server)}", "/").body == b"hello"


def test_inherited_socket_on_every_interface_warns_too():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        fd = sock.fileno()
        server = ServerProcess.scgikit("wsgi_apps:hello", bind=[f"fd://{fd}"])
        server.start(ready=r"Master \d+ starting", pass_fds=[fd])
        try:
            server.wait_for_log(rf"fd://{fd} \(0\.0\.0\.0:{port}\) {WARNING}")
            assert request(f"127.0.0.1:{port}", "/").body == b"hello"
        finally:
            assert server.stop() == 0


@pytest.mark.parametrize(("local", "everywhere"), [
    (("0.0.0.0", 4000), True), (("::", 4000, 0, 0), True),
    (("127.0.0.1", 4000), False), (("::1", 4000, 0, 0), False),
    (("192.0.2.1", 4000), False), ("/run/app.sock", False), ("", False), ((), False),
])
def test_every_interface_is_recognised_for_ipv4_and_ipv6(local, everywhere):
    assert is_wildcard(local) is everywhere


# --- --allow-from ---------------------------------------------------------------------------


def answer_or_reset(address):
    """Everything the server answers a well-formed request with; a reset counts as nothing."""
    with connect(address, timeout=30) as sock:
        try:
            sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}, 0))
            return read_all(sock)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_peer_outside_allow_from_is_closed_without_an_answer(serve, model, tmp_path):
    server = serve("wsgi_apps:hello", "--allow-from", "10.0.0.0/8", "--workers", "1",
                   bind=["127.0.0.1:0", f"unix:{tmp_path}/app.sock"])
    tcp, unix = [m.group(1) for m in server.wait_for_log(r"Listening at: (\S+)", count=2)]
    for _ in range(3):
        assert answer_or_reset(tcp) == b""
    server.wait_for_log(r"Refused a connection from 127\.0\.0\.1: not in --allow-from")
    # Unix peers are not filtered (the socket file's mode guards them), and the
    # worker that refused the TCP peers goes on serving.
    assert request(unix, "/").body == b"hello"


def test_peer_inside_allow_from_is_served(serve, model):
    server = serve("wsgi_apps:hello", "--allow-from", "10.0.0.0/8", "--allow-from",
                   "127.0.0.0/8", "--allow-from", "::1")
    for _ in range(3):
        assert request(server.address, "/").body == b"hello"


# --- who owns the unix socket file ----------------------------------------------------------


@as_root
def test_group_option_gives_the_socket_file_that_group(serve, tmp_path):
    [group] = existing_groups("www-data", "nogroup", "daemon")
    path = tmp_path / "app.sock"
    server = serve("wsgi_apps:hello", "--group", group.gr_name, bind=[f"unix:{path}"])
    assert owner_and_mode(path) == (0, group.gr_gid, 0o660)
    assert request(server.address, "/").body == b"hello"


def readable_by(user, path):
    """Whether ``user`` may read ``path`` and enter each folder above it (by mode bits)."""
    for part in (path, *path.parents):
        info = part.stat()
        bits = (0o500 if info.st_uid == user.pw_uid else
                0o050 if info.st_gid == user.pw_gid else 0o005)
        if info.st_mode & bits != bits:
            return False
    return True


@as_root
def test_user_option_gives_the_socket_file_that_user_and_its_login_group(serve, model):
    user = existing_user("nobody", "www-data", "daemon")
    stdlib = Path(os.__file__).resolve().parent
    if model == "threads" and not readable_by(user, stdlib):
        # The threads worker imports a module of the standard library (queue) once it is
        # the user; sync and asyncio import nothing new then.
        pytest.skip(f"{user.pw_name} cannot read this Python's standard library ({stdlib})")
    # pytest's tmp_path sits under a 0700 folder the user cannot enter; the app runs as it.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        app = Path(folder) / "whoami.py"
        app.write_text(app_source(model, "b'%d:%d' % (os.getuid(), os.getgid())", "import os"))
        os.chmod(folder, 0o755)
        app.chmod(0o644)
        path = Path(folder) / "app.sock"
        server = serve(f"{app}:app", "--user", user.pw_name, bind=[f"unix:{path}"],
                       asgi=f"{app}:app")
        assert owner_and_mode(path) == (user.pw_uid, user.pw_gid, 0o660)
        assert request(server.address, "/").body == b"%d:%d" % (user.pw_uid, user.pw_gid)


@as_root
def test_socket_owner_option_gives_the_socket_file_that_user_and_group(serve, tmp_path):
    user = existing_user("www-data", "nobody", "daemon")
    [group] = existing_groups("nogroup", "daemon", "www-data")
    path = tmp_path / "app.sock"
    server = serve("wsgi_apps:hello", "--socket-owner", f"{user.pw_name}:{group.gr_name}",
                   "--socket-mode", "0600", bind=[f"unix:{path}"])
    assert owner_and_mode(path) == (user.pw_uid, group.gr_gid, 0o600)
    assert request(server.address, "/").body == b"hello"  # root's workers, root's client


@as_root
def test_socket_owner_user_alone_means_its_login_group(serve, tmp_path):
    user = existing_user("www-data", "nobody", "daemon")
    path = tmp_path / "app.sock"
    serve("wsgi_apps:hello", "--socket-owner", user.pw_name, bind=[f"unix:{path}"])
    assert owner_and_mode(path) == (user.pw_uid, user.pw_gid, 0o660)


@as_root
def test_socket_owner_wins_over_user_and_group(serve, tmp_path):
    first, second = existing_groups("www-data", "nogroup", "daemon", count=2)
    path = tmp_path / "app.sock"
    serve("wsgi_apps:hello", "--group", first.gr_name,
          "--socket-owner", f"root:{second.gr_name}", bind=[f"unix:{path}"])
    assert owner_and_mode(path) == (0, second.gr_gid, 0o660)


@as_root
def test_inherited_socket_keeps_the_owner_its_launcher_gave_it(tmp_path):
    user = existing_user("www-data", "nobody", "daemon")
    path = tmp_path / "inherited.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        os.chmod(path, 0o600)
        fd = sock.fileno()
        server = ServerProcess.scgikit("wsgi_apps:hello", "--socket-owner", user.pw_name,
                                       bind=[f"fd://{fd}"])
        server.start(ready=r"Master \d+ starting", pass_fds=[fd])
        try:
            assert owner_and_mode(path) == (0, 0, 0o600)
            assert request(f"unix:{path}", "/").body == b"hello"
        finally:
            assert server.stop() == 0


def test_owner_is_set_while_the_socket_file_is_mode_000(monkeypatch, tmp_path):
    """In-process: at the moment of chown the file admits nobody, and chmod comes after."""
    path = tmp_path / "app.sock"
    me = pwd.getpwuid(os.geteuid()).pw_name
    calls = []
    real_chown, real_chmod = os.chown, os.chmod

    def chown(target, uid, gid, **kwargs):
        calls.append(("chown", stat.S_IMODE(os.lstat(target).st_mode)))
        real_chown(target, uid, gid, **kwargs)

    def chmod(target, mode, **kwargs):
        calls.append(("chmod", mode))
        real_chmod(target, mode, **kwargs)

    monkeypatch.setattr(os, "chown", chown)
    monkeypatch.setattr(os, "chmod", chmod)
    config = Config(target="a:b", bind=(f"unix:{path}",), socket_owner=me, socket_mode=0o640)
    listeners = sockets.open_listeners(config, {})
    try:
        assert calls == [("chown", 0), ("chmod", 0o640)]
    finally:
        for listener in listeners:
            listener.close(unlink=True)
    assert not path.exists()


def test_socket_file_is_never_reachable_wider_than_asked(serve, tmp_path):
    """Watch the file from its creation: mode 000 until its owner is set, then --socket-mode."""
    path = tmp_path / "app.sock"
    args = ["--socket-mode", "0640"]
    if os.geteuid() == 0:
        user = existing_user("www-data", "nobody", "daemon")
        [group] = existing_groups("nogroup", "daemon", "www-data")
        args += ["--socket-owner", f"{user.pw_name}:{group.gr_name}"]
        final = (user.pw_uid, group.gr_gid, 0o640)
    else:
        final = (os.geteuid(), os.getegid(), 0o640)
    seen = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                seen.add(owner_and_mode(path))
            except FileNotFoundError:
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        serve("wsgi_apps:hello", *args, bind=[f"unix:{path}"])
    finally:
        done.set()
        watcher.join(10)
    seen.add(owner_and_mode(path))
    assert owner_and_mode(path) == final
    for uid, gid, mode in seen:
        assert mode == 0 or ((uid, gid) == final[:2] and mode & ~0o640 == 0), (
            f"socket seen as {uid}:{gid} mode {mode:o}")


@pytest.mark.parametrize(("args", "message"), [
    (["--socket-owner", "no-such-user-x"], "--socket-owner: there is no user named "
                                           "'no-such-user-x'"),
    (["--socket-owner", "root:no-such-group-x"], "--socket-owner: there is no group named "
                                                 "'no-such-group-x'"),
    pytest.param(["--group", "no-such-group-x"], "--group: there is no group named "
                 "'no-such-group-x'", marks=as_root),
    pytest.param(["--user", "no-such-user-x"], "--user: there is no user named "
                 "'no-such-user-x'", marks=as_root),
    (["--socket-owner", "a:b:c"], "--socket-owner: 'a:b:c' is not USER or USER:GROUP"),
])
def test_owner_that_does_not_exist_is_refused_at_start(tmp_path, args, message):
    path = tmp_path / "app.sock"
    result = run_serve(*args, "--bind", f"unix:{path}")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()


@pytest.mark.parametrize("text", ["", ":", "www-data:", ":www-data", "a:b:c"])
def test_socket_owner_must_be_user_or_user_colon_group(text):
    with pytest.raises(ConfigError, match=r"^--socket-owner: .* is not USER or USER:GROUP$"):
        Config(target="a:b", socket_owner=text)


@pytest.fixture
def not_root(monkeypatch):
    """Make this process look, to the checks, like the unprivileged user "nobody" (or kin)."""
    user = existing_user("nobody", "www-data", "daemon")
    monkeypatch.setattr(sockets.os, "geteuid", lambda: user.pw_uid)
    monkeypatch.setattr(sockets.os, "getegid", lambda: user.pw_gid)
    monkeypatch.setattr(sockets.os, "getgroups", lambda: [user.pw_gid])
    return user


def test_socket_owner_naming_another_user_is_refused_without_root(not_root):
    root = pwd.getpwuid(0).pw_name
    with pytest.raises(ConfigError, match=rf"^--socket-owner {root}: only root can give a "
                                          r"socket file to another user"):
        socket_owner(Config(target="a:b", socket_owner=root))


def test_socket_owner_naming_a_foreign_group_is_refused_without_root(not_root):
    wheel = grp.getgrgid(0).gr_name
    with pytest.raises(ConfigError, match="only root, or a member of the group, can give"):
        socket_owner(Config(target="a:b", socket_owner=f"{not_root.pw_name}:{wheel}"))


def test_socket_owner_naming_oneself_is_allowed_without_root(not_root):
    owner = socket_owner(Config(target="a:b", socket_owner=not_root.pw_name))
    assert (owner.uid, owner.gid) == (not_root.pw_uid, not_root.pw_gid)


def test_non_root_start_with_another_users_socket_owner_exits_2(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root; the refusal is checked in-process by the tests above")
    user = existing_user("nobody", "www-data", "daemon")
    result = run_serve("--socket-owner", user.pw_name, "--bind", f"unix:{tmp_path}/app.sock")
    assert result.returncode == 2
    assert "only root can give a socket file to another user" in result.stderr


def test_no_owner_options_leave_the_socket_file_to_its_starter():
    assert socket_owner(Config(target="a:b")) is None


# --- the documentation ----------------------------------------------------------------------


def test_security_doc_cites_only_tests_that_exist():
    text = (ROOT / "docs" / "security.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(cited) >= 10
    for path, name in cited:
        source = (ROOT / path).read_text()
        names = {node.name for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.FunctionDef)}
        assert name in names, f"docs/security.md cites {path}::{name}, which does not exist"


def test_unix_socket_peer_address_is_what_allow_list_lets_through(tmp_path):
    """What accept() returns for a unix peer really is the str the AllowList permits."""
    from scgikit.allow import AllowList

    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            conn, peer = listener.accept()
            conn.close()
    assert isinstance(peer, (str, bytes))
    assert AllowList(["10.0.0.0/8"]).permits(peer)
