"""SIGHUP with --config FILE: the master reads the file again, as it did at start.

The servers are real: a file is written, the server started with ``--config``, the file
rewritten, and HUP sent; what changed is seen from outside (the ``--stats`` health page's
worker counts, the app's answer, the access log line, the addresses served).  Whether a
setting did not change is read once the reload it belonged to is over ("generation N
ready"), never by waiting to see that nothing happens.  How the new ``Config`` is made
(``reconfigure.reread``) is tested on its own, without a server.
"""

import json
import logging
import os
import re
import signal
from argparse import Namespace

import pytest
from scgi_raw import request
from servers import wait_until
from stats_pages import health

from scgikit.config import Config, option_fields
from scgikit.master.reconfigure import Origin, reread, restart_reason


def write(path, **keys):
    """A configuration file of ``keys`` (field-like names: max_requests -> max-requests)."""
    path.write_text("".join(f"{name.replace('_', '-')} = {json.dumps(value)}\n"
                            for name, value in keys.items()))


def hup(server, generation):
    """HUP, and wait until the reload it starts is over."""
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(rf"Reload: generation {generation} ready", timeout=30)


def workers(server):
    """The number of workers the master keeps, and how many of them are ready."""
    _, figures = health(server.stats)
    return figures["wanted"], figures["ready"]


def answers(server, prefix):
    """Whether the app answers ``prefix``... (the old workers may still take a request or
    two after the new generation is ready: they stop gracefully)."""
    return request(server.address).body.startswith(prefix)


def start(serve, target, config, *args, bind=("127.0.0.1:0",), **kwargs):
    server = serve(target, "--config", str(config), *args, bind=bind, **kwargs)
    server.stats = server.wait_for_log(r"Metrics at: (\S+)")[0].group(1)
    return server


# --- the server, over TCP and a unix socket, on every model ------------------------------


def test_a_hup_applies_the_files_new_workers_env_and_access_log_format(
        serve, model, transport, tmp_path):
    config = tmp_path / "scgikit.toml"
    settings = dict(workers=1, stats="127.0.0.1:0", access_log="-",
                    access_log_format="before {status}", env=["GREETING=v1"])
    write(config, **settings)
    server = start(serve, "wsgi_apps:env_var", config, bind=[transport])
    assert answers(server, b"v1 ")
    server.wait_for_log(r"^before 200$")
    write(config, **settings | dict(workers=2, access_log_format="after {status}",
                                    env=["GREETING=v2"]))
    hup(server, 1)
    server.wait_for_log(r"Reload: read .*scgikit\.toml: --workers 2 \(was 1\); "
                        r"--access-log-format \"after \{status\}\" \(was \"before \{status\}\"\); "
                        r"--env GREETING \(was GREETING\)")
    assert wait_until(lambda: workers(server) == (2, 2), timeout=20, message="2 workers")
    wait_until(lambda: answers(server, b"v2 "), message="the new --env")
    server.wait_for_log(r"^after 200$")


# --- a file that no longer works, a setting that takes a restart --------------------------


@pytest.mark.models("sync", reason="what the master does with the file: the same on every model")
def test_a_broken_file_keeps_every_setting_logs_why_and_still_reloads_the_workers(
        serve, model, tmp_path):
    config = tmp_path / "scgikit.toml"
    write(config, workers=2, stats="127.0.0.1:0", max_requests=1000)
    server = start(serve, "wsgi_apps:hello", config)
    wait_until(lambda: workers(server) == (2, 2), timeout=20, message="2 workers")
    config.write_text('workers = 3\nstats = "127.0.0.1:0"\nmax-requests = [\n')
    hup(server, 1)
    server.wait_for_log(r"\[ERROR\] Reload: keeping the settings in force: .*scgikit\.toml:3: "
                        r"not valid TOML: ")
    write(config, workers=0, stats="127.0.0.1:0")
    hup(server, 2)
    server.wait_for_log(r"\[ERROR\] Reload: keeping the settings in force: .*scgikit\.toml: "
                        r"key 'workers': 0 is out of range: 1 to 1024$")
    config.unlink()
    hup(server, 3)
    server.wait_for_log(r"\[ERROR\] Reload: keeping the settings in force: --config "
                        r".*scgikit\.toml: No such file or directory$")
    assert workers(server) == (2, 2)
    assert request(server.address).body == b"hello"
    assert "Reload: read" not in server.log
    write(config, workers=1, stats="127.0.0.1:0", max_requests=1000)
    hup(server, 4)
    server.wait_for_log(r"Reload: read .*: --workers 1 \(was 2\)$")


@pytest.mark.models("sync", reason="the listening sockets are the master's: the same on "
                    "every model")
def test_a_changed_bind_is_logged_as_taking_a_restart_and_the_old_address_serves(
        serve, model, transport, tmp_path):
    config = tmp_path / "scgikit.toml"
    moved = "127.0.0.1:1" if transport.startswith("127.") else f"unix:{tmp_path}/moved.sock"
    write(config, bind=[transport], workers=1, stats="127.0.0.1:0")
    server = start(serve, "wsgi_apps:hello", config, bind=())
    address = server.address
    write(config, bind=[moved], workers=2, stats="127.0.0.1:0", pid=str(tmp_path / "pid"))
    hup(server, 1)
    server.wait_for_log(rf"\[WARNING\] Reload: --bind changed in .*scgikit\.toml: takes a "
                        rf"restart; keeping {re.escape(transport)}$")
    server.wait_for_log(r"\[WARNING\] Reload: --pid changed in .*: takes a restart; "
                        r"keeping none$")
    server.wait_for_log(r"Reload: read .*: --workers 2 \(was 1\)$")
    assert request(address).body == b"hello"
    assert not (tmp_path / "moved.sock").exists() and not (tmp_path / "pid").exists()
    assert wait_until(lambda: workers(server) == (2, 2), timeout=20, message="2 workers")


@pytest.mark.models("sync", reason="how the master builds its settings: the same on every "
                    "model")
def test_the_command_line_still_wins_and_the_masters_changed_environment_is_not_read(
        serve, model, tmp_path):
    # The file's --env sets SCGIKIT_WORKERS in the master's own environment: read on HUP,
    # it would win over the file.  The environment of the start has none.
    config = tmp_path / "scgikit.toml"
    write(config, workers=1, stats="127.0.0.1:0", env=["SCGIKIT_WORKERS=3"], max_requests=10)
    server = start(serve, "wsgi_apps:hello", config, "--max-requests", "0")
    write(config, workers=2, stats="127.0.0.1:0", env=["SCGIKIT_WORKERS=3"], max_requests=20)
    hup(server, 1)
    server.wait_for_log(r"Reload: read .*: --workers 2 \(was 1\)$")
    assert wait_until(lambda: workers(server) == (2, 2), timeout=20, message="2 workers")


# --- the new Config, without a server -----------------------------------------------------


def origin(tmp_path, *argv, environ=None):
    """The Origin of ``scgikit serve ARGV --config FILE``."""
    import argparse

    from scgikit.options import add_arguments

    parser = argparse.ArgumentParser()
    parser.add_argument("target", nargs="?")
    add_arguments(parser)
    arguments = parser.parse_args([*argv, "--config", str(tmp_path / "scgikit.toml")])
    return Origin(arguments, environ or {}, folder=str(tmp_path))


def test_reread_applies_what_follows_and_keeps_what_takes_a_restart(tmp_path):
    config = tmp_path / "scgikit.toml"
    write(config, app="app:a", bind=["127.0.0.1:4000"], workers=2, user="nobody", timeout=30)
    start = origin(tmp_path)
    old = start.config()
    write(config, app="app:b", bind=["127.0.0.1:5000"], workers=4, user="root", timeout=5,
          socket_mode="0600")
    result = reread(old, start)
    assert (result.config.target, result.config.workers, result.config.timeout) == (
        "app:b", 4, 5.0)
    assert (result.config.bind, result.config.user, result.config.socket_mode) == (
        ("127.0.0.1:4000",), "nobody", 0o660)
    assert result.lines == [
        (logging.WARNING, f"Reload: --bind changed in {config}: takes a restart; keeping "
                          "127.0.0.1:4000"),
        (logging.WARNING, f"Reload: --socket-mode changed in {config}: takes a restart; "
                          "keeping 0660"),
        (logging.WARNING, f"Reload: --user changed in {config}: takes a restart; keeping "
                          "nobody"),
        (logging.INFO, f"Reload: read {config}: app app:b (was app:a); --workers 4 (was 2); "
                       "--timeout 5 (was 30)"),
    ]
    assert result.config.sources["bind"] == f"{config}: key 'bind'"


def test_with_preload_the_app_and_interface_take_a_restart(tmp_path):
    config = tmp_path / "scgikit.toml"
    write(config, app="app:a", preload=True)
    start = origin(tmp_path)
    old = start.config()
    write(config, app="app:b", preload=True, interface="wsgi")
    result = reread(old, start)
    assert (result.config.target, result.config.interface) == ("app:a", "auto")
    assert [line for _, line in result.lines[:2]] == [
        f"Reload: app changed in {config}: takes a restart (--preload: the master loaded "
        "the app at start); keeping app:a",
        f"Reload: --interface changed in {config}: takes a restart (with --preload); "
        "keeping auto"]


def test_a_file_that_fails_gives_back_the_old_config_and_one_error_line(tmp_path):
    config = tmp_path / "scgikit.toml"
    write(config, app="app:a", max_requests=100, max_requests_jitter=10)
    start = origin(tmp_path)
    old = start.config()
    write(config, app="app:a", max_requests_jitter=10)
    assert reread(old, start).config is old
    assert reread(old, start).lines == [(logging.ERROR, (
        f"Reload: keeping the settings in force: {config}: key 'max-requests-jitter': "
        "applies only with --max-requests"))]


def test_flags_and_the_start_environment_win_over_the_file_as_at_start(tmp_path):
    config = tmp_path / "scgikit.toml"
    write(config, app="app:a", workers=2, timeout=30)
    start = origin(tmp_path, "--workers", "3", environ={"SCGIKIT_TIMEOUT": "7"})
    old = start.config()
    write(config, app="app:a", workers=5, timeout=60)
    result = reread(old, start)
    assert (result.config.workers, result.config.timeout) == (3, 7.0)
    assert result.lines == [(logging.INFO, f"Reload: read {config}: no setting changed")]


def test_a_relative_file_is_read_from_the_folder_of_the_start(tmp_path, monkeypatch):
    (tmp_path / "scgikit.toml").write_text('app = "app:a"\nworkers = 2\n')
    monkeypatch.chdir(tmp_path)
    start = Origin(Namespace(target=None, config_file="scgikit.toml"), {})
    old = start.config()
    monkeypatch.chdir(tmp_path.parent)  # as --chdir moves the master
    (tmp_path / "scgikit.toml").write_text('app = "app:a"\nworkers = 4\n')
    assert reread(old, start).config.workers == 4
    assert os.getcwd() == str(tmp_path.parent)


def test_every_restart_flag_names_a_switch_of_config():
    switches = {f.name for f in option_fields() if f.metadata["switch"]}
    for f in option_fields():
        restart = f.metadata["restart"]
        assert restart in (True, False) or restart in switches, f.name
    assert restart_reason("workers", Config()) is None
    assert restart_reason("allow_from", Config(session_affinity=True)) == \
        " (with --session-affinity)"


def test_apply_sets_the_workers_env_log_level_and_listeners_timeouts(monkeypatch):
    import socket
    import struct

    from scgikit.master.listeners import Listener
    from scgikit.master.reconfigure import apply
    from scgikit.master.roster import MasterState

    monkeypatch.setenv("HUP_KEPT", "set by the app")
    monkeypatch.setenv("HUP_GIVEN", "from --env")
    monkeypatch.setenv("HUP_NEW", "")  # (taken away at the end: apply sets it)
    logger = logging.getLogger("scgikit")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logging.getLogger("scgikit.access"), "handlers", [])
    level = logger.level
    old = Config(target="app:a", workers=2, env=(("HUP_GIVEN", "from --env"),),
                 header_timeout=10)
    new = old.replace(workers=3, env=(("HUP_NEW", "1"),), log_level="warning",
                      header_timeout=2.5)
    state = MasterState(wanted=5)  # TTIN: the file's --workers did not change, it stays
    try:
        with socket.socket() as sock:
            apply(old, old.replace(timeout=5), state, [Listener(sock, "test")], {})
            assert state.wanted == 5
            apply(old, new, state, [Listener(sock, "test")], {"HUP_GIVEN": "at start"})
            timeout = struct.unpack("ll", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll")))
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)
    assert state.wanted == 3
    assert (os.environ["HUP_NEW"], os.environ["HUP_GIVEN"]) == ("1", "at start")
    assert os.environ["HUP_KEPT"] == "set by the app"
    assert timeout == (2, 500000)


def test_without_a_file_a_hup_reads_nothing():
    from scgikit.master.arbiter import Arbiter

    start = Origin(Namespace(target="app:a"), {})
    assert Arbiter(Config(target="app:a"), origin=start).origin is None
