"""--reload: a real server whose app is edited in a temp folder serves the edit, and only then.

Files are written with an explicit mtime one second past their last one: filesystem
timestamps can be coarse, and two writes in a row must still look like two versions.
Whether a change did not reload is proven by counting reloads in the log after a
later change that does, never by waiting to see that nothing happens.
"""

import os
import re
import subprocess
import sys

import pytest
from scgi_raw import request
from servers import app_source, child_env, wait_until, worker_pids

from scgikit.config import Config
from scgikit.master.reload import (
    SETTLE,
    Filter,
    Watcher,
    next_scan_after,
    scan,
    watched_folders,
)


def app_text(version, model="sync"):
    """An app answering ``version`` and its worker's pid, for ``model`` (conftest.py)."""
    return app_source(model, f"b'{version} ' + str(os.getpid()).encode()", "import os")


CHANGED = r"Reload: changed: "
STARTED = r"Reload: starting \d+ new workers"


def count(server, pattern):
    return len(re.findall(pattern, server.log))


def changed_names(server):
    """Every file named by a reload line so far."""
    lines = re.findall(CHANGED + r"(.*)", server.log)
    return {name for line in lines for name in line.split(", ")}


def write(path, text):
    """Write ``text`` to ``path`` with an mtime a whole second past its last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    stamp = max(before + 1_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(stamp, stamp))


def version(server):
    """The version the app answers with, and the worker that answered."""
    answer = request(server.address, "/")
    assert answer.status == 200, answer
    name, pid = answer.body.decode().split()
    return name, int(pid)


def serving(server, name, timeout=30.0):
    return wait_until(lambda: version(server)[0] == name, timeout=timeout,
                      message=f"the app to answer {name}")


@pytest.fixture
def app_file(tmp_path, request):
    """The app, in the kind the test's model serves (the server tests are on every model;
    the watcher's, on sync)."""
    path = tmp_path / "app" / "hello.py"
    write(path, app_text("v1", request.getfixturevalue("model")
                         if "model" in request.fixturenames else "sync"))
    return path


def start(serve, app_file, *args, workers=1, bind=("127.0.0.1:0",), env=None):
    """Serve ``app_file`` with --reload; returns once every first worker has loaded it (an
    edit before then would be a failed start for the late ones, not a failed reload)."""
    server = serve(f"{app_file}:app", "--reload", "--workers", str(workers),
                   "--log-level", "debug", *args, bind=bind, cwd=app_file.parent, env=env,
                   asgi=f"{app_file}:app")
    server.wait_for_log(r"Master \d+ starting .* --reload, for development only: watching")
    server.wait_for_log(r"Worker \d+ ready \(generation 0\)", count=workers, timeout=30)
    return server


# --- the server, over TCP and a unix socket, on every model ------------------------------


def test_an_edited_app_is_served_by_new_workers_all_of_them(serve, model, transport, app_file):
    server = start(serve, app_file, workers=2, bind=[transport])
    server.wait_for_log(r"starting 2 workers for .*; --reload, for development only: "
                        r"watching 1 file in ")
    assert version(server)[0] == "v1"
    old = wait_until(lambda: len(worker_pids(server.pid)) == 2 and worker_pids(server.pid),
                     timeout=20, message="2 workers")
    write(app_file, app_text("v2", model))
    serving(server, "v2")
    assert server.wait_for_log(CHANGED + r"(.*)")[0].group(1) == "hello.py"
    server.wait_for_log(r"generation 1 ready; stopping 2 old workers", timeout=30)
    new = wait_until(lambda: (pids := worker_pids(server.pid)).isdisjoint(old)
                     and len(pids) == 2 and pids, timeout=30, message="only new workers")
    answers = [version(server) for _ in range(20)]
    assert {name for name, _ in answers} == {"v2"}
    assert {pid for _, pid in answers} <= new


def test_a_syntax_error_keeps_the_old_workers_serving_logs_once_and_a_fix_reloads(
        serve, model, transport, app_file):
    server = start(serve, app_file, workers=2, bind=[transport])
    assert version(server)[0] == "v1"
    write(app_file, "def app(environ, start_response)\n    pass\n")
    server.wait_for_log(r"Reload failed: worker \d+ exited with code 4 \(it could not load "
                        r"the app; its error is above\); keeping generation 0", timeout=30)
    assert {version(server)[0] for _ in range(10)} == {"v1"}
    assert "SyntaxError: expected ':'" in server.log
    assert f'File "{app_file}", line 1' in server.log
    write(app_file, app_text("v3", model))
    serving(server, "v3")
    server.wait_for_log(r"generation 1 ready", timeout=30)
    # One new worker tried the broken app, not one per --workers, and nobody retried it.
    assert server.log.count("Cannot load the app") == 1
    assert server.log.count("SyntaxError") == 1
    assert count(server, CHANGED) == 2


def test_an_app_broken_at_start_is_logged_once_and_served_once_fixed(
        serve, model, transport, tmp_path):
    app_file = tmp_path / "app" / "hello.py"
    write(app_file, "import no_such_module_here\n")
    server = serve(f"{app_file}:app", "--reload", "--workers", "2", bind=[transport],
                   cwd=app_file.parent, asgi=f"{app_file}:app")
    server.wait_for_log(r"Worker failed to boot: worker \d+ exited with code 4 \(it could not "
                        r"load the app; its error is above\); waiting for a change to reload "
                        r"\(--reload\)", timeout=30)
    write(app_file, app_text("v1", model))
    serving(server, "v1")
    assert server.proc.poll() is None
    assert server.log.count("No module named 'no_such_module_here'") == 1
    assert count(server, "waiting for a change") == 1


def test_a_burst_of_writes_gives_one_reload(serve, model, transport, app_file):
    server = start(serve, app_file, bind=[transport])
    assert version(server)[0] == "v1"
    for number in range(30):
        write(app_file.parent / "lib" / f"part{number}.py", f"PART = {number}\n")
    write(app_file, app_text("v2", model))
    serving(server, "v2")
    burst = server.wait_for_log(CHANGED + r"(.*)")[0].group(1)
    assert burst.endswith(" and 26 more")
    write(app_file.parent / "last.py", "LAST = True\n")
    server.wait_for_log(CHANGED + r"last\.py$")
    server.wait_for_log(STARTED, count=2)
    assert count(server, CHANGED) == 2
    assert count(server, STARTED) == 2


# --- what is watched -----------------------------------------------------------------------


def test_files_in_skipped_folders_and_not_included_do_not_reload(serve, app_file):
    server = start(serve, app_file)
    folder = app_file.parent
    write(folder / "__pycache__" / "hello.cpython-311.pyc", "not really bytecode")
    write(folder / "__pycache__" / "cached.py", "X = 1\n")
    write(folder / ".git" / "hook.py", "X = 1\n")
    write(folder / "notes.txt", "a note\n")
    write(folder / "old.pyc", "bytes\n")
    write(folder / "env" / "pyvenv.cfg", "home = /usr/bin\n")
    write(folder / "env" / "lib" / "site.py", "X = 1\n")
    write(folder / "helper.py", "HELPER = 1\n")
    # Had any of the earlier files been watched, the scan that saw helper.py saw it too.
    assert server.wait_for_log(CHANGED + r"(.*)")[0].group(1) == "helper.py"
    write(folder / "helper.py", "HELPER = 2\n")
    server.wait_for_log(STARTED, count=2)
    assert [m.group(1) for m in server.wait_for_log(CHANGED + r"(.*)", count=2)] == [
        "helper.py", "helper.py"]


def test_include_and_exclude_globs_add_to_the_defaults(serve, app_file):
    server = start(serve, app_file, "--reload-include", "*.html",
                   "--reload-include", "conf/*.toml", "--reload-exclude", "build",
                   "--reload-exclude", "gen_*.py", "--reload-exclude", "docs/*")
    folder = app_file.parent
    write(folder / "build" / "out.py", "X = 1\n")
    write(folder / "gen_models.py", "X = 1\n")
    write(folder / "docs" / "conf.py", "X = 1\n")
    write(folder / "other" / "conf" / "app.toml", "x = 1\n")  # not conf/ under the folder
    write(folder / "templates" / "page.html", "<p>hello</p>\n")
    write(folder / "conf" / "app.toml", "x = 1\n")
    server.wait_for_log(CHANGED + r".*conf/app\.toml")
    assert changed_names(server) == {"conf/app.toml", "templates/page.html"}
    write(folder / "models.py", "X = 1\n")  # *.py still watched
    assert server.wait_for_log(CHANGED + r"(.*)", count=2)[1].group(1) == "models.py"


def test_reload_dir_replaces_the_apps_folder(serve, app_file, tmp_path):
    watched = tmp_path.resolve() / "watched"
    watched.mkdir()
    server = start(serve, app_file, "--reload-dir", str(watched))
    server.wait_for_log(rf"watching 0 files in {watched}$")
    write(app_file, app_text("v2"))
    write(watched / "settings.py", "DEBUG = True\n")
    assert server.wait_for_log(CHANGED + r"(.*)")[0].group(1) == str(watched / "settings.py")
    serving(server, "v2")


def test_the_folder_after_chdir_and_the_folder_of_the_target_file_are_watched(
        serve, app_file, tmp_path):
    site = tmp_path.resolve() / "site"
    write(site / "settings.py", "DEBUG = True\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = serve(f"{app_file}:app", "--reload", "--chdir", str(site), cwd=elsewhere)
    server.wait_for_log(rf"watching 2 files in {site}, {app_file.parent.resolve()}$")
    write(site / "settings.py", "DEBUG = False\n")
    assert server.wait_for_log(CHANGED + r"(.*)")[0].group(1) == "settings.py"
    write(app_file, app_text("v2"))
    serving(server, "v2")
    server.wait_for_log(CHANGED, count=2)
    assert changed_names(server) == {"settings.py", str(app_file.resolve())}


def test_a_deleted_file_reloads(serve, app_file):
    extra = app_file.parent / "extra.py"
    write(extra, "X = 1\n")
    server = start(serve, app_file)
    server.wait_for_log(r"watching 2 files in ")
    extra.unlink()
    assert server.wait_for_log(CHANGED + r"(.*)")[0].group(1) == "extra.py"


def test_an_edit_of_the_same_length_within_the_same_second_is_not_served_stale(
        serve, app_file):
    # Python's bytecode cache keys a source on its mtime in whole seconds and its size;
    # the workers write none under --reload, so this edit cannot be served from it.
    second = app_file.stat().st_mtime_ns // 1_000_000_000 * 1_000_000_000
    os.utime(app_file, ns=(second + 100_000_000,) * 2)
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a developer's machine
    server = start(serve, app_file, env=env)
    assert version(server)[0] == "v1"
    app_file.write_text(app_text("v2"))
    os.utime(app_file, ns=(second + 600_000_000,) * 2)
    serving(server, "v2")
    assert not (app_file.parent / "__pycache__").exists()


# --- operator mistakes: one line, exit status 2 -----------------------------------------


@pytest.mark.parametrize(("args", "environ", "message"), [
    (["--reload-dir", "src"], {}, "scgikit serve: --reload-dir: applies only with --reload"),
    (["--reload", "--reload-dir", "nowhere"], {}, "scgikit serve: --reload-dir: nowhere: "
                                                  "no such folder"),
    ([], {"SCGIKIT_RELOAD": "maybe"}, "scgikit serve: SCGIKIT_RELOAD: 'maybe': expected 1 or 0"),
])
def test_reload_mistakes_are_one_clear_line(tmp_path, args, environ, message):
    write(tmp_path / "app.py", app_text("v1"))
    result = subprocess.run(
        [sys.executable, "-m", "scgikit", "serve", "app:app", "--bind", "127.0.0.1:0", *args],
        cwd=tmp_path, env=child_env(**environ), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]


def test_reload_from_the_environment(serve, tmp_path):
    write(tmp_path / "app.py", app_text("v1"))
    server = serve("app:app", cwd=tmp_path, env=child_env(SCGIKIT_RELOAD="1"))
    folder = tmp_path.resolve()
    server.wait_for_log(rf"--reload, for development only: watching 1 file in {folder}$")


def test_an_app_object_already_loaded_cannot_be_reloaded():
    code = "from scgikit.scgi_server import SCGIServer; SCGIServer(port=0, reload=True).serve()"
    result = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "scgikit: --reload needs a TARGET that the workers import: an app object already "
        "loaded cannot be loaded afresh")


# --- the watcher alone, on a clock of its own -------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_burst_spread_over_several_scans_is_handed_over_once(tmp_path):
    clock = Clock()
    watcher = Watcher([str(tmp_path)], Filter(), interval=0.5, clock=clock)
    for step in range(4):  # one change seen by each of four scans in a row
        write(tmp_path / f"m{step}.py", "X = 1\n")
        clock.now += 0.5
        assert watcher.poll() == []
    clock.now += 0.5
    assert watcher.poll() == [str(tmp_path / f"m{step}.py") for step in range(4)]
    clock.now += 0.5
    assert watcher.poll() == []


def test_changes_are_handed_over_a_short_settle_after_the_scan_that_saw_them(tmp_path):
    clock = Clock()
    watcher = Watcher([str(tmp_path)], Filter(), interval=0.5, clock=clock)
    write(tmp_path / "m.py", "X = 1\n")
    clock.now = 0.5
    assert watcher.poll() == []
    clock.now = 0.5 + SETTLE - 0.01
    assert watcher.poll() == []
    clock.now = 0.5 + SETTLE
    assert watcher.poll() == [str(tmp_path / "m.py")]
    assert watcher.seconds_left() == pytest.approx(0.5)


def test_no_scan_before_it_is_due(tmp_path):
    clock = Clock()
    watcher = Watcher([str(tmp_path)], Filter(), interval=0.5, clock=clock)
    write(tmp_path / "m.py", "X = 1\n")
    clock.now = 0.4
    assert watcher.poll() == [] and watcher.files == {}
    assert watcher.seconds_left() == pytest.approx(0.1)


def test_a_file_saved_by_rename_is_a_change_even_with_the_same_time_and_size(tmp_path):
    path = tmp_path / "m.py"
    write(path, "X = 1\n")
    before = scan([str(tmp_path)], Filter())
    stamp = path.stat().st_mtime_ns
    replacement = tmp_path / "m.py.new"
    replacement.write_text("X = 2\n")
    os.utime(replacement, ns=(stamp, stamp))
    os.replace(replacement, path)
    after = scan([str(tmp_path)], Filter())
    assert before[str(path)][:2] == after[str(path)][:2]
    assert before != after


def test_a_slow_scan_spaces_the_next_one_to_keep_the_master_mostly_idle():
    assert next_scan_after(0.001, interval=0.5) == 0.5
    assert next_scan_after(0.2, interval=0.5) == pytest.approx(4.0)


def test_a_folder_inside_another_is_scanned_once(tmp_path):
    root = str(tmp_path.resolve())
    (tmp_path / "app").mkdir()
    assert watched_folders(Config(target="app/hello.py:app", reload=True), root) == [root]
    assert watched_folders(Config(target=f"{root}/app/hello.py:app", reload=True),
                           f"{root}/app") == [f"{root}/app"]
    assert watched_folders(Config(target="hello:app", reload=True,
                                  reload_dir=("app", ".", "app")), root) == [root]
