"""--preload: the master imports the app once, before the fork, and every worker serves it.

The app (tests/fixtureapps/preload_apps.py) answers the pid that imported it and the pid
that made it ready to serve, and writes each import's pid to a file: with --preload there
is one import, the master's; without, one per worker.  What each worker makes of the app
is still made there: its ASGI lifespan runs, a classic handler factory is called.
"""

import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from scgi_raw import request
from servers import FIXTURES, ServerProcess, child_env, wait_until, worker_pids

from scgikit.config import Config
from scgikit.master.check import check

READY = r"Worker \d+ ready \(generation 0\)"


def pids(server, uri="/"):
    """The two numbers the app answers: (importing pid, serving pid), or (uid, uid)."""
    answer = request(server.address, uri)
    assert answer.status == 200, answer
    imported, serving = answer.body.decode().split()
    return int(imported), int(serving)


def start(serve, tmp_path, transport, *args):
    """Two workers of preload_apps:app (its twin on asyncio), run from ``tmp_path``
    (--chdir), logging each import to imports.log there (--env: a relative path), started
    as systemd starts a service, with NOTIFY_SOCKET (a socket the test holds)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    server = serve("preload_apps:app", "--workers", "2", "--log-level", "debug",
                   "--chdir", str(tmp_path), "--env", "IMPORT_LOG=imports.log", *args,
                   bind=[transport], env=child_env(NOTIFY_SOCKET=str(tmp_path / "notify")))
    server.wait_for_log(READY, count=2, timeout=30)
    notify.close()
    return server


def imports(tmp_path):
    """The pid of each import of the app, each having seen no NOTIFY_SOCKET."""
    lines = [line.split() for line in (tmp_path / "imports.log").read_text().splitlines()]
    assert all(notify == "-" for _, notify in lines), lines
    return [int(pid) for pid, _ in lines]


def test_with_preload_the_app_is_imported_once_in_the_master_after_env_and_chdir(
        serve, model, transport, tmp_path):
    server = start(serve, tmp_path, transport, "--preload", "--max-requests", "3")
    server.wait_for_log(r"Loaded preload_apps:\S+ in the master \(--preload\)")
    answers = [pids(server) for _ in range(12)]
    # Each from a worker (on asyncio: the one its lifespan startup ran in), all of the
    # master's import, the recycled workers' too (3 requests each).
    assert {imported for imported, _ in answers} == {server.pid}
    serving = {pid for _, pid in answers}
    assert server.pid not in serving and len(serving) >= 3
    # --env and --chdir applied before the import, and systemd's variables gone
    assert imports(tmp_path) == [server.pid]


def test_without_preload_each_worker_imports_the_app(serve, model, transport, tmp_path):
    server = start(serve, tmp_path, transport)
    workers = worker_pids(server.pid)
    assert sorted(imports(tmp_path)) == sorted(workers)
    for _ in range(6):
        imported, serving = pids(server)
        assert imported == serving and serving in workers


@pytest.mark.models("sync", reason="a classic handler runs on the sync model only")
def test_with_preload_a_handler_factory_is_still_called_in_each_worker(serve, model, transport):
    server = serve("preload_apps:make_handler", "--workers", "2", "--preload",
                   "--log-level", "debug", bind=[transport])
    server.wait_for_log(READY, count=2, timeout=30)
    workers = worker_pids(server.pid)
    imported, made = pids(server)
    assert imported == server.pid and made in workers


@pytest.mark.models("sync", reason="the user the import runs as is the master's on any model")
def test_with_preload_the_app_is_imported_as_the_masters_user_and_served_as_user(
        serve, model, transport):
    if os.geteuid() != 0:
        pytest.skip("--user needs root")
    server = serve("preload_apps:uids", "--preload", "--user", "nobody", bind=[transport])
    assert pids(server) == (0, pwd.getpwnam("nobody").pw_uid)


def test_a_hup_with_preload_replaces_the_workers_losing_nothing_and_says_the_code_stays(
        serve, model, transport, tmp_path):
    server = start(serve, tmp_path, transport, "--preload")
    old = worker_pids(server.pid)
    answers: list[tuple[int, int]] = []
    failures: list[str] = []
    done = threading.Event()

    def load():  # bounded: 5,000 requests or 60 s
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline and len(answers) < 5000:
            try:
                answers.append(pids(server))
            except (OSError, AssertionError) as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(answers) >= 20, timeout=30, message="answers before the HUP")
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload: the app was loaded in the master \(--preload\): the new "
                            r"workers run the code loaded at start; restart the server to load "
                            r"new code")
        server.wait_for_log(r"generation 1 ready; stopping 2 old workers", timeout=30)
        wait_until(lambda: worker_pids(server.pid).isdisjoint(old), timeout=30,
                   message="the old workers gone")
        seen = len(answers)
        wait_until(lambda: len(answers) >= seen + 20, timeout=30, message="answers after")
    finally:
        done.set()
        thread.join(60)
    assert failures == []
    assert {imported for imported, _ in answers} == {server.pid}
    assert {serving for _, serving in answers} - old  # new workers answered, same import
    assert imports(tmp_path) == [server.pid]


def test_an_app_that_cannot_load_with_preload_is_one_line_and_status_4_nothing_bound(
        serve, model, transport, tmp_path):
    server = serve("broken_app:app", "--preload", "--pid", str(tmp_path / "pid"),
                   bind=[transport], ready=None, asgi="broken_app:app")
    assert server.proc.wait(30) == 4
    server.wait_for_log("<stderr closed>")
    assert server.lines == [
        "scgikit serve: cannot load the app 'broken_app:app': ImportError: this app cannot "
        f"be imported (at {FIXTURES / 'broken_app.py'}, line 1)", "<stderr closed>"]
    assert list(tmp_path.iterdir()) == []  # no socket file, no pid file


@pytest.mark.parametrize(("target", "args", "message"), [
    ("boot_apps:exit_on_load()", (), "cannot load the app 'boot_apps:exit_on_load()': it "
                                     "exited: DATABASE_URL not set"),
    ("no_such_module:app", (), "cannot load the app: 'no_such_module:app': no module named "
                               "'no_such_module'"),
    ("wsgi_apps:hello", ("--worker", "asyncio"), "cannot load the app: --worker asyncio "
                                                 "serves ASGI apps; this is a wsgi app"),
], ids=["sys.exit", "no-module", "wrong-model"])
def test_with_preload_every_way_an_app_fails_to_load_is_one_line_and_status_4(
        target, args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "scgikit", "serve", target, "--preload",
                             "--bind", f"unix:{tmp_path}/scgi.sock", *args], env=child_env(),
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (4, f"scgikit serve: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_preload_is_refused_with_reload_in_one_line_and_status_2():
    result = subprocess.run([sys.executable, "-m", "scgikit", "serve", "wsgi_apps:hello",
                             "--preload", "--reload"], env=child_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == ("scgikit serve: --preload: cannot go with --reload: the app is "
                             "loaded once, in the master, so a reload would start workers "
                             "with the old code\n")


def test_check_says_the_app_is_preloaded_in_the_master():
    result = subprocess.run([sys.executable, "-m", "scgikit", "check", "wsgi_apps:hello",
                             "--preload"], env=child_env(), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert ("preloaded: in the master, before the workers fork (--preload); a HUP replaces "
            "the workers, not the code\n") in result.stdout
    without = check(Config(target="wsgi_apps:hello"), {})
    assert without.errors == [] and "preloaded" not in dict(without.found)


CLASSIC_SCRIPT = """
import scgikit.scgi_server
from preload_apps import PidHandler
scgikit.scgi_server.SCGIServer(PidHandler, port=0, max_children=1).serve()
"""


@pytest.mark.models("sync", reason="a classic handler runs on the sync model only")
def test_a_server_given_its_handler_loaded_says_a_hup_keeps_the_code(model, tmp_path):
    # SCGIServer hands the master its handler class, imported already: as with --preload.
    script = tmp_path / "classic.py"
    script.write_text(CLASSIC_SCRIPT)
    with ServerProcess([sys.executable, str(script)]) as server:
        imported, made = pids(server)
        assert imported == server.pid and made in worker_pids(server.pid)
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload: the app was given to the server as an object: the new "
                            r"workers run the code loaded at start; restart the server to load "
                            r"new code")
