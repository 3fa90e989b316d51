"""The configuration file (--config FILE, SCGIKIT_CONFIG): keys from the option table,
below the environment and the command line, every mistake one line naming the file."""

import argparse
import re
import signal
import subprocess
import sys

import pytest
from scgi_raw import request
from servers import ServerProcess, child_env, wait_until

from scgikit.config import ConfigError
from scgikit.options import EXAMPLE_FILE, add_arguments, from_arguments

pytestmark = pytest.mark.one_path(reason="the configuration file is read by Python only")


def build(tmp_path, text, argv=(), environ=None, target=None):
    path = tmp_path / "scgikit.toml"
    path.write_text(text)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(["-c", str(path), *argv]), environ or {},
                          target=target)


# --- precedence: default < file < environment < command line ----------------------------

# (key in the file, its value, environment, its value, flag, its value, field, the values
# each layer gives: default, file, environment, command line)
LAYERS = [
    ("workers", "3", "SCGIKIT_WORKERS", "5", "--workers", "7", "workers", (None, 3, 5, 7)),
    ("timeout", "2.5", "SCGIKIT_TIMEOUT", "4", "--timeout", "6", "timeout",
     (30.0, 2.5, 4.0, 6.0)),
    ("max-body-size", '"64k"', "SCGIKIT_MAX_BODY_SIZE", "1m", "--max-body-size", "100",
     "max_body_size", (None, 64 * 1024, 1 << 20, 100)),
    ("max-body-size", "4096", "SCGIKIT_MAX_BODY_SIZE", "1m", "--max-body-size", "100",
     "max_body_size", (None, 4096, 1 << 20, 100)),
    ("bind", '["127.0.0.1:1", "unix:/f.sock"]', "SCGIKIT_BIND", "127.0.0.1:2 [::1]:3",
     "--bind", "unix:/c.sock", "bind",
     ((), ("127.0.0.1:1", "unix:/f.sock"), ("127.0.0.1:2", "[::1]:3"), ("unix:/c.sock",))),
    ("env", '["A=file", "B="]', "SCGIKIT_ENV", "A=env", "--env", "A=cli", "env",
     ((), (("A", "file"), ("B", "")), (("A", "env"),), (("A", "cli"),))),
    # A switch: true or false in the file, 1 or 0 in the environment, the bare flag.
    ("reload", "true", "SCGIKIT_RELOAD", "0", "--reload", None, "reload",
     (False, True, False, True)),
]


@pytest.mark.parametrize("key, value, var, var_value, flag, flag_value, name, expected", LAYERS,
                         ids=[f"{layer[0]}={layer[1]}" for layer in LAYERS])
def test_each_layer_overrides_the_one_below(tmp_path, key, value, var, var_value, flag,
                                             flag_value, name, expected):
    _, from_file, from_env, from_cli = expected
    if expected[0] is not None:
        assert getattr(build(tmp_path, ""), name) == expected[0]
    assert getattr(build(tmp_path, f"{key} = {value}\n"), name) == from_file
    assert getattr(build(tmp_path, f"{key} = {value}\n", environ={var: var_value}),
                   name) == from_env
    argv = [flag] if flag_value is None else [flag, flag_value]
    assert getattr(build(tmp_path, f"{key} = {value}\n", argv,
                         environ={var: var_value}), name) == from_cli


def test_options_the_file_does_not_set_keep_their_defaults(tmp_path):
    config = build(tmp_path, "workers = 2\n")
    assert config.workers == 2
    assert config.timeout == 30.0 and config.bind == () and config.max_body_size is None


def test_the_app_comes_from_the_file_unless_target_is_given(tmp_path):
    assert build(tmp_path, 'app = "wsgi_apps:hello"\n').target == "wsgi_apps:hello"
    assert build(tmp_path, 'app = "wsgi_apps:hello"\n',
                 target="wsgi_apps:echo").target == "wsgi_apps:echo"


def test_scgikit_config_names_the_file_and_config_wins_over_it(tmp_path):
    (tmp_path / "other.toml").write_text("workers = 9\n")
    config = build(tmp_path, "workers = 2\n",
                   environ={"SCGIKIT_CONFIG": str(tmp_path / "other.toml")})
    assert config.workers == 2
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = from_arguments(parser.parse_args([]),
                            {"SCGIKIT_CONFIG": str(tmp_path / "other.toml")})
    assert config.workers == 9 and config.config_file == str(tmp_path / "other.toml")


def test_the_example_of_the_options_page_is_a_valid_file(tmp_path):
    config = build(tmp_path, EXAMPLE_FILE)
    assert config.target == "myapp:app"
    assert config.bind == ("unix:/run/myapp.sock", "127.0.0.1:4000")
    assert (config.workers, config.max_requests, config.max_requests_jitter) == (4, 1000, 100)
    assert config.timeout == 60.0 and config.max_body_size == 10 << 20
    assert config.socket_mode == 0o660
    assert config.env == (("MYAPP_SETTINGS", "/etc/myapp.ini"),)


# --- mistakes: one line naming the file and the key ------------------------------------------

MISTAKES = [
    ("max_requests = 3\n",
     "{path}: unknown key 'max_requests': keys are spelled as the long flags, "
     "here 'max-requests'"),
    ("workrs = 3\n", "{path}: unknown key 'workrs' (did you mean 'workers'?)"),
    ("config = 'other.toml'\n",
     "{path}: unknown key 'config': a configuration file cannot name another"),
    ('workers = "four"\n', '{path}: key \'workers\': expected an integer, got a string ("four")'),
    ("workers = true\n", "{path}: key 'workers': expected an integer, got a boolean (true)"),
    ("reload = 1\n", "{path}: key 'reload': expected true or false, got an integer (1)"),
    ('timeout = "30s"\n',
     "{path}: key 'timeout': expected a number of seconds, got a string (\"30s\")"),
    ("max-body-size = 1.5\n",
     "{path}: key 'max-body-size': expected an integer or a string such as \"64k\", "
     "got a float (1.5)"),
    ("socket-mode = 660\n",
     "{path}: key 'socket-mode': expected a string of octal digits such as \"0660\", "
     "got an integer (660)"),
    ('bind = "127.0.0.1:4000"\n',
     "{path}: key 'bind': expected an array of strings, got a string (\"127.0.0.1:4000\")"),
    ("bind = [4000]\n",
     "{path}: key 'bind': expected an array of strings, got an array of an integer (4000)"),
    ("[server]\nworkers = 2\n", "{path}: unknown key 'server'"),
    ("app = 3\n", "{path}: key 'app': expected a string such as \"myapp:app\", "
                  "got an integer (3)"),
    ("workers = 0\n", "{path}: key 'workers': 0 is out of range: 1 to 1024"),
    ('log-level = "loud"\n', "{path}: key 'log-level': 'loud': expected debug, info, warning, "
                            "error or critical"),
    ('max-body-size = "lots"\n',
     "{path}: key 'max-body-size': 'lots' is not a size such as 65536, 64k or 10m"),
    ('bind = ["::1:4000"]\n',
     "{path}: key 'bind': '::1:4000': write IPv6 addresses in brackets, as [::1]:4000"),
    ("workers = 2\nthreads = \n",
     "{path}:2: not valid TOML: Invalid value (column 11)"),
    ("workers = 2\nworkers = 3\n",
     "{path}:2: not valid TOML: Cannot overwrite a value (column 12)"),
    ('workers = 2\nbind = ["127.0.0.1:1",\n',
     "{path}:2: not valid TOML: Invalid value (at the end of the file)"),
]


@pytest.mark.parametrize("text, message", MISTAKES, ids=[m[0].strip() for m in MISTAKES])
def test_a_mistake_in_the_file_is_named_with_its_file_and_key(tmp_path, text, message):
    path = tmp_path / "scgikit.toml"
    with pytest.raises(ConfigError) as raised:
        build(tmp_path, text)
    assert str(raised.value).startswith(message.format(path=path))
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"^--config {re.escape(str(tmp_path))}/none.toml: "
                                          "No such file or directory$"):
        build(tmp_path, "", ["-c", str(tmp_path / "none.toml")])


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b'script-name = "/caf\xe9"\n')
    with pytest.raises(ConfigError, match="latin1.toml: not valid TOML: the file is not UTF-8$"):
        build(tmp_path, "", ["-c", str(tmp_path / "latin1.toml")])


def scgikit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scgikit", *args], capture_output=True,
                          text=True, timeout=60, env=child_env(), cwd=cwd)


@pytest.mark.parametrize("text, message", [
    ("max_requests = 3\n", "scgikit.toml: unknown key 'max_requests'"),
    ('workers = "four"\n', "scgikit.toml: key 'workers': expected an integer"),
    ("workers = \n", "scgikit.toml:1: not valid TOML: "),
])
def test_serve_stops_on_a_mistake_in_the_file_with_one_line_and_status_2(tmp_path, text,
                                                                          message):
    (tmp_path / "scgikit.toml").write_text(text)
    result = scgikit("serve", "wsgi_apps:hello", "-c", "scgikit.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"scgikit serve: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_serve_without_target_nor_app_in_the_file_says_so(tmp_path):
    (tmp_path / "scgikit.toml").write_text("workers = 1\n")
    result = scgikit("serve", "-c", "scgikit.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ('scgikit serve: no app to serve: give TARGET, or app = '
                             '"module:app" in the --config file\n')


def test_serve_names_a_missing_file(tmp_path):
    result = scgikit("serve", "wsgi_apps:hello", "--config", "absent.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "scgikit serve: --config absent.toml: No such file or directory\n"


# --- serving with the file's settings -----------------------------------------------------


def test_serve_c_file_serves_with_the_files_settings(tmp_path, transport):
    (tmp_path / "scgikit.toml").write_text(
        'app = "wsgi_apps:env_var"\n'
        f'bind = ["{transport}"]\n'
        "workers = 1\n"
        'env = ["GREETING=from-file"]\n'
        'max-body-size = "1k"\n')
    argv = [sys.executable, "-m", "scgikit", "serve", "-c", "scgikit.toml"]
    with ServerProcess(argv, cwd=tmp_path).start() as server:
        assert request(server.address, "/").body.startswith(b"from-file ")
        assert request(server.address, "/", method="POST", body=b"x" * 1025).status == 413
        assert request(server.address, "/", method="POST", body=b"x" * 1024).status == 200
        server.wait_for_log("starting 1 workers for wsgi_apps:env_var")


def test_the_command_line_overrides_the_file_in_a_running_server(tmp_path, transport):
    (tmp_path / "scgikit.toml").write_text(
        'app = "wsgi_apps:env_var"\nbind = ["unix:never.sock"]\nworkers = 3\n'
        'env = ["GREETING=from-file"]\n')
    argv = [sys.executable, "-m", "scgikit", "serve", "wsgi_apps:pid", "-c", "scgikit.toml",
            "--bind", transport, "--workers", "1"]
    with ServerProcess(argv, cwd=tmp_path).start() as server:
        assert request(server.address, "/").body.isdigit()  # wsgi_apps:pid, not env_var
        server.wait_for_log("starting 1 workers for wsgi_apps:pid")
    assert not (tmp_path / "never.sock").exists()


def test_a_relative_path_in_the_file_is_not_taken_from_the_files_folder(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "scgikit.toml").write_text(
        'app = "wsgi_apps:hello"\nbind = ["unix:./scgi.sock"]\nworkers = 1\n')
    argv = [sys.executable, "-m", "scgikit", "serve", "-c", "etc/scgikit.toml"]
    with ServerProcess(argv, cwd=tmp_path).start() as server:
        assert request(f"unix:{tmp_path}/scgi.sock", "/").body == b"hello"
        assert not (tmp_path / "etc" / "scgi.sock").exists()
        server.wait_for_log("Listening at: unix:./scgi.sock")


def test_a_reload_loads_the_app_afresh_and_reads_the_file_again(tmp_path):
    app = tmp_path / "reloaded.py"
    version = "import os\ndef app(e, s):\n    s('200 OK', [])\n" \
              "    return [b'version {} ' + os.environ['GREETING'].encode()]\n"
    app.write_text(version.format(1))
    config = tmp_path / "scgikit.toml"
    config.write_text(f'app = "{app}:app"\nworkers = 1\nenv = ["GREETING=one"]\n')
    argv = [sys.executable, "-m", "scgikit", "serve", "-c", str(config), "--bind", "127.0.0.1:0"]
    with ServerProcess(argv, cwd=tmp_path).start() as server:
        assert request(server.address, "/").body == b"version 1 one"
        app.write_text(version.format(2))
        config.write_text(f'app = "{app}:app"\nworkers = 1\nenv = ["GREETING=two"]\n')
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"generation 1 ready", timeout=30)
        wait_until(lambda: request(server.address, "/").body.startswith(b"version 2"),
                   timeout=30, message="the reloaded app to answer")
        assert request(server.address, "/").body == b"version 2 two"  # test_hup_config.py
