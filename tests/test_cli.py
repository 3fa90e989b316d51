"""The command line: help with examples, clear one-line errors, the generated docs in step."""

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from scgi_raw import request
from servers import child_env

from scgikit.cli import SUBCOMMANDS
from scgikit.options import options_page

ROOT = Path(__file__).parent.parent


def scgikit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "scgikit", *args], capture_output=True,
                          text=True, timeout=60, env=env or child_env())


def test_serve_help_lists_every_option_with_its_variable_and_examples():
    result = scgikit("serve", "--help")
    assert result.returncode == 0
    for option in ("--bind", "--workers", "--max-requests-jitter", "--header-timeout",
                   "--max-body-size", "--access-log", "--user", "--script-name"):
        assert option in result.stdout
    assert "SCGIKIT_WORKERS" in result.stdout
    assert "examples:" in result.stdout


def test_no_subcommand_prints_help_and_fails():
    result = scgikit()
    assert result.returncode == 2
    assert "serve" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers: 0 is out of range: 1 to 1024"),
    (["--workers", "many"], "--workers: 'many' is not a whole number"),
    (["--socket-mode", "999"], "is not an octal file mode"),
    (["--max-body-size", "lots"], "is not a size"),
    (["--script-name", "app/"], "must start with '/'"),
    (["--log-level", "loud"], "'loud': expected debug, info, warning, error or critical"),
    (["--env", "NOVALUE"], "--env: expected KEY=VALUE, not 'NOVALUE'"),
])
def test_bad_option_is_one_clear_line(args, message):
    result = scgikit("serve", "wsgi_apps:hello", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_list_of_commands_gives_each_its_own_modules_help():
    # `scgikit --help` lists the commands from a table, without importing their modules.
    listed = " ".join(scgikit("--help").stdout.split())
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        assert importlib.import_module(module_name).HELP == help_line
        assert f" {name} {help_line} " in listed


MODULES = """\
import sys


def app(environ, start_response):
    start_response("200 OK", [])
    return [" ".join(sorted(sys.modules)).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": " ".join(sorted(sys.modules)).encode()})
"""
# What serving never needs: the other commands' modules.
OTHER_COMMANDS = ("scgikit.client", "scgikit.client_command", "scgikit.gateway",
                  "scgikit.frontends", "scgikit.master.check", "scgikit.master.front_end")


def test_serve_imports_none_of_the_other_commands_and_asyncio_only_for_its_model(
        serve, model, tmp_path):
    # What a worker has: what the master imported before the fork, and its own imports.
    (tmp_path / "modules_app.py").write_text(MODULES)
    server = serve(f"{tmp_path}/modules_app.py:app", "--workers", "1",
                   asgi=f"{tmp_path}/modules_app.py:asgi_app")
    loaded = set(request(server.address, "/").body.decode().split())
    assert "scgikit.master.arbiter" in loaded
    assert loaded.isdisjoint(OTHER_COMMANDS)
    assert ("asyncio" in loaded) == (model == "asyncio")


def test_environment_variables_configure_the_server(serve):
    server = serve("wsgi_apps:env_var", env=child_env(SCGIKIT_ENV="GREETING=from-env",
                                                       SCGIKIT_WORKERS="1"))
    assert request(server.address, "/").body.startswith(b"from-env ")
    server.wait_for_log("starting 1 workers")


def test_options_doc_is_generated_from_the_field_table():
    assert (ROOT / "docs" / "options.md").read_text() == options_page(), (
        "docs/options.md is stale: run scripts/make-docs")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_option_runs_workers_as_that_user(serve):
    # pytest's tmp_path sits under a 0700 folder that the user "nobody" cannot enter.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        check_user_option(serve, Path(folder))


def check_user_option(serve, tmp_path):
    app = tmp_path / "whoami.py"
    app.write_text("import os\ndef app(e, s):\n    s('200 OK', [])\n"
                   "    return [str(os.getuid()).encode()]\n")
    tmp_path.chmod(0o755)
    app.chmod(0o644)
    server = serve(f"{app}:app", "--user", "nobody", "--group", "nogroup",
                   bind=[f"unix:{tmp_path}/s.sock"])
    import pwd

    assert request(server.address, "/").body == str(pwd.getpwnam("nobody").pw_uid).encode()
    assert (tmp_path / "s.sock").stat().st_uid == pwd.getpwnam("nobody").pw_uid


WHOAMI = """\
import os


def app(environ, start_response):
    start_response("200 OK", [])
    return [str(os.getuid()).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getuid()).encode()})
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_that_drop_privileges_serve_on_every_model(serve, model, transport):
    # A worker that has dropped privileges may not read Python's own library (here it is
    # installed under /root, kept 0700): the master imports what the workers run on
    # (asyncio, for that model) before it forks them.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        app = Path(folder) / "whoami.py"
        app.write_text(WHOAMI)
        Path(folder).chmod(0o755)
        app.chmod(0o644)
        server = serve(f"{app}:app", "--user", "nobody", "--group", "nogroup",
                       bind=[transport], asgi=f"{app}:asgi_app")
        import pwd

        assert request(server.address, "/").body == str(pwd.getpwnam("nobody").pw_uid).encode()


def test_user_option_without_root_is_refused():
    if os.geteuid() == 0:
        pytest.skip("running as root: the refusal is for everyone else")
    result = scgikit("serve", "wsgi_apps:hello", "--user", "nobody", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "need the server to be started as root" in result.stderr
