"""Start-up failures: an app that cannot load, workers that die or hang before they are ready,
workers that keep dying after. None of them makes the master fork in a loop or hang.

An app that fails as it loads fails before any worker model is chosen: those starts are
tested once.  Workers that serve, die after they are ready, or keep serving through a
failed reload are tested on every model (conftest.py: model).
"""

import errno
import logging
import mmap
import os
import re
import signal
import time

import pytest
from figures import record
from scgi_raw import request
from servers import app_source, failed_start, wait_until, worker_pids

from scgikit.config import Config
from scgikit.master.arbiter import MAX_WORKERS, Arbiter, WorkerRecord


def forks(server):
    return len(re.findall(r"Started worker \d+", server.log))


def last_lines(server, count):
    return [line for line in server.lines if line != "<stderr closed>"][-count:]


def ready_workers(server, count):
    """The pids of the first ``count`` workers, once each has said it is ready."""
    found = server.wait_for_log(r"Worker (\d+) ready", count=count, timeout=20)
    return {int(match.group(1)) for match in found[:count]}


def test_app_calling_sys_exit_while_loading_stops_the_master_with_status_4_and_its_message():
    server = failed_start("boot_apps:exit_on_load()")
    assert server.proc.returncode == 4
    server.wait_for_log(r"Cannot load the app 'boot_apps:exit_on_load\(\)': it exited: "
                        r"DATABASE_URL not set")
    server.wait_for_log(r"Worker failed to boot; stopping with exit status 4: worker \d+ exited "
                        r"with code 4 \(it could not load the app; its error is above\)$")
    record("start-up failure: sys.exit() while the app loads", "tcp", forks=forks(server),
           exit_status=server.proc.returncode)
    assert forks(server) <= 3


def test_app_aborting_while_loading_stops_the_master_with_status_4_naming_sigabrt():
    server = failed_start("boot_apps:abort_on_load()")
    assert server.proc.returncode == 4
    server.wait_for_log(r"Worker failed to boot; stopping with exit status 4: worker \d+ was "
                        r"killed by signal 6 \(SIGABRT; before it was ready\)$")
    record("start-up failure: os.abort() while the app loads", "tcp", forks=forks(server),
           exit_status=server.proc.returncode)
    assert forks(server) <= 3


def test_import_hanging_past_boot_timeout_stops_the_master_with_status_4():
    started = time.monotonic()
    server = failed_start("boot_apps:hang_on_load()", "--boot-timeout", "2")
    assert server.proc.returncode == 4
    assert time.monotonic() - started < 20
    server.wait_for_log(r"Worker failed to boot; stopping with exit status 4: worker \d+ was "
                        r"killed by signal 9 \(SIGKILL; it did not load the app within "
                        r"--boot-timeout 2s\)$")
    assert forks(server) <= 3


@pytest.mark.parametrize("target", ["boot_apps:exit_on_load()", "boot_apps:abort_on_load()",
                                    "broken_app:app"])
def test_failed_start_log_ends_with_the_cause_then_the_stop(target):
    server = failed_start(target)
    cause, stop = last_lines(server, 2)
    assert re.search(r"\[ERROR\] Worker failed to boot; stopping with exit status 4: ", cause)
    assert re.search(rf"\[INFO\] Master {server.pid} stopped$", stop)
    assert "Killing" not in server.log
    assert "graceful-timeout" not in server.log


def test_workers_crashing_soon_after_ready_are_restarted_with_backoff_not_in_a_loop(
        serve, model):
    # The app dies 0.2 s after loading: well after it said "ready", as a crash in serving.
    server = serve("boot_apps:crash_soon_after_ready(0.2)", "--workers", "2",
                   "--log-level", "debug")
    server.wait_for_log(r"replacing it in \d+\.\ds \(workers keep dying\)", timeout=10)
    window_end = time.monotonic() + 5.0
    while time.monotonic() < window_end:  # the fork rate over this window is the property
        time.sleep(0.1)
    # Without backoff this was 46 forks in 5 s; the backoff allows about 8.
    record("workers crashing 0.2 s after ready: forks in about 5 s", "tcp", model=model,
           forks=forks(server))
    assert forks(server) <= 12
    assert server.proc.poll() is None
    assert "Worker failed to boot" not in server.log


def test_reloads_onto_a_hanging_import_never_pile_up_workers_and_the_old_ones_keep_serving(
        serve, model, tmp_path):
    app = tmp_path / "reloaded.py"
    app.write_text(app_source(model, "b'version 1'"))
    server = serve(f"{app}:app", "--workers", "2", "--boot-timeout", "5", "--log-level", "debug",
                   asgi=f"{app}:app")
    old = ready_workers(server, 2)
    app.write_text("import time\ntime.sleep(3600)\n")
    for generation in (1, 2, 3):  # each once its workers are loading the app
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(rf"Started worker \d+ \(generation {generation}\)", count=2)
    server.wait_for_log(r"Reload: abandoning 2 workers still loading the app", count=2)
    wait_until(lambda: len(worker_pids(server.pid)) == 4, message="2 old + 2 loading workers")
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}
    server.wait_for_log(r"Reload failed: worker \d+ was killed by signal 9 \(SIGKILL; it did "
                        r"not load the app within --boot-timeout 5s\); keeping generation 0",
                        timeout=30)
    wait_until(lambda: worker_pids(server.pid) == old, message="only the old workers")
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}


def test_a_reload_stops_workers_still_loading_with_sigterm_then_kills_them_after_graceful_timeout(
        serve, model, tmp_path):
    """SIGTERM, not SIGKILL: a worker the master last saw loading may have said "ready"
    since and be serving, and SIGTERM lets it finish (that moment is a race between two
    processes, which no test can set up on demand; here the loading app shows which
    signal came).  --timeout 0 does not turn the --graceful-timeout kill off."""
    app = tmp_path / "reloaded.py"
    marks = tmp_path / "marks"
    marks.mkdir()
    version_1 = app_source(model, "b'version 1'")
    app.write_text(version_1)
    server = serve(f"{app}:app", "--workers", "2", "--timeout", "0", "--graceful-timeout", "1",
                   "--log-level", "debug", asgi=f"{app}:app")
    old = ready_workers(server, 2)
    app.write_text(
        "import os, pathlib, signal, time\n"
        f"marks = pathlib.Path({str(marks)!r})\n"
        "def noted(signum, frame):\n"  # written whole, then named: never read half-written
        "    (marks / f'{os.getpid()}.part').write_text(signal.Signals(signum).name)\n"
        "    os.replace(marks / f'{os.getpid()}.part', marks / f'{os.getpid()}.signal')\n"
        "signal.signal(signal.SIGTERM, noted)\n"
        "(marks / f'{os.getpid()}.loading').touch()\n"
        "time.sleep(3600)\n")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: len(list(marks.glob("*.loading"))) == 2, message="2 workers loading")
    app.write_text(version_1)
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload: abandoning 2 workers still loading the app")
    wait_until(lambda: len(list(marks.glob("*.signal"))) == 2, message="both signalled")
    assert {path.read_text() for path in marks.glob("*.signal")} == {"SIGTERM"}
    server.wait_for_log(r"Worker \d+ did not stop within --graceful-timeout; killing it",
                        count=2, timeout=20)
    server.wait_for_log(r"Reload: generation 2 ready; stopping 2 old workers", timeout=20)
    wait_until(lambda: len(pids := worker_pids(server.pid)) == 2 and pids.isdisjoint(old),
               message="only the 2 new workers")
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}


def test_reload_onto_an_app_that_aborts_keeps_the_old_workers_and_names_the_signal(
        serve, model, tmp_path):
    app = tmp_path / "reloaded.py"
    app.write_text(app_source(model, "b'version 1'"))
    server = serve(f"{app}:app", "--workers", "2", "--log-level", "debug", asgi=f"{app}:app")
    old = ready_workers(server, 2)
    app.write_text("import os\nos.abort()\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload failed: worker \d+ was killed by signal 6 \(SIGABRT; before "
                        r"it was ready\); keeping generation 0", timeout=30)
    wait_until(lambda: worker_pids(server.pid) == old, message="only the old workers")
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}


# --- in-process: the master's decisions without real children ---------------------------

NO_SUCH_PID = 2**22 + 7  # above Linux's largest pid_max: never a real process


def bare_arbiter(workers=1):
    arbiter = Arbiter(Config(target="boot_apps:hello", workers=workers))
    arbiter.slots = memoryview(mmap.mmap(-1, 8 * MAX_WORKERS)).cast("d")
    return arbiter


def test_failed_fork_is_logged_and_retried_after_a_backoff(monkeypatch, caplog):
    arbiter = bare_arbiter()
    calls = []

    def fork():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return NO_SUCH_PID

    monkeypatch.setattr(os, "fork", fork)
    with caplog.at_level(logging.ERROR, logger="scgikit"):
        arbiter._manage()
    assert "fork() failed: Resource temporarily unavailable; retrying in 0.1s" in caplog.text
    assert arbiter.state.workers == {}
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    arbiter._manage()
    assert len(calls) == 1  # not at once: the retry waits for the backoff
    wait_until(lambda: arbiter._manage() or len(calls) == 2, timeout=5, message="the retry")
    assert list(arbiter.state.workers) == [NO_SUCH_PID]
    assert calls[1] - calls[0] >= 0.1


def test_worker_boot_error_on_first_start_makes_the_master_exit_3():
    arbiter = bare_arbiter()
    arbiter._worker_exited(WorkerRecord(NO_SUCH_PID, 0, 0, started=time.monotonic()), 3)
    assert arbiter.exit_code == 3
    assert arbiter.state.stopping
    assert "exit status 3: worker" in arbiter.state.failure
    assert "could not start" in arbiter.state.failure


def test_first_start_gives_a_worker_killed_by_a_signal_one_more_try_then_stops(caplog):
    arbiter = bare_arbiter()
    with caplog.at_level(logging.ERROR, logger="scgikit"):
        arbiter._worker_exited(WorkerRecord(NO_SUCH_PID, 0, 0), -9)
    assert not arbiter.state.stopping
    assert (f"Worker {NO_SUCH_PID} was killed by signal 9; replacing it (SIGKILL; before it "
            "was ready; the start stops if this happens again)") in caplog.text
    arbiter._worker_exited(WorkerRecord(NO_SUCH_PID + 1, 0, 0), -9)
    assert arbiter.state.stopping
    assert arbiter.exit_code == 4


def test_deaths_after_ready_back_off_doubling_up_to_a_cap_and_the_first_is_replaced_at_once():
    arbiter = bare_arbiter()
    arbiter.state.ever_ready = True
    delays = []
    for _ in range(9):
        arbiter._worker_exited(WorkerRecord(NO_SUCH_PID, 0, 0, ready=True), -9)
        delays.append(arbiter.state.backoff)
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert not arbiter.state.stopping
