"""The configuration: safe defaults, environment variables, the command line on top."""

import argparse
import sys

import pytest

from scgikit.addresses import Address
from scgikit.config import Config, ConfigError, env_name, file_key
from scgikit.options import add_arguments, from_arguments, options_page

pytestmark = pytest.mark.one_path(reason="Config has no C twin")


def build(argv, environ=None):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv), environ or {}, target="app:app")


def test_defaults_listen_on_loopback_only():
    config = build([])
    assert [str(a) for a in config.addresses] == ["127.0.0.1:4000"]
    assert config.max_header_size == 64 * 1024 and config.max_body_size is None
    assert config.socket_mode == 0o660
    assert config.workers >= 1


def test_environment_variables_are_read():
    config = build([], {"SCGIKIT_WORKERS": "3", "SCGIKIT_BIND": "unix:/a.sock 127.0.0.1:9",
                        "SCGIKIT_MAX_BODY_SIZE": "10m"})
    assert config.workers == 3
    assert config.bind == ("unix:/a.sock", "127.0.0.1:9")
    assert config.max_body_size == 10 << 20


def test_body_limit_is_max_body_size_or_the_largest_size_where_unlimited():
    assert build([]).body_limit == sys.maxsize
    assert build(["--max-body-size", "10m"]).body_limit == 10 << 20


def test_command_line_wins_over_the_environment():
    assert build(["--workers", "5"], {"SCGIKIT_WORKERS": "3"}).workers == 5


def test_repeatable_options_collect_every_value():
    config = build(["--bind", "127.0.0.1:1", "--bind", "[::1]:2", "--env", "A=1", "--env", "B="])
    assert config.bind == ("127.0.0.1:1", "[::1]:2")
    assert config.env == (("A", "1"), ("B", ""))


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "^--workers: 0 is out of range: 1 to 1024$"),
    (["--workers", "two"], "--workers: 'two' is not a whole number"),
    (["--socket-mode", "rw"], "octal"),
    (["--max-header-size", "lots"], "--max-header-size"),
    (["--timeout", "-1"], "^--timeout: -1 is out of range: 0 to 31536000$"),
    (["--bind", "::1:4000"], "--bind"),
    (["--script-name", "app/"], "--script-name"),
    (["--log-level", "loud"], "--log-level"),
    (["--env", "NOEQUALS"], "KEY=VALUE"),
    (["--http", "[::1"], "^--http: '\\[::1': IPv6 address is missing its closing"),
    (["--http", "fd://3"], "^--http: 'fd://3': the gateway speaks HTTP to a browser, over TCP: "
                          "give HOST:PORT$"),
])
def test_bad_values_name_the_option(argv, message):
    with pytest.raises(ConfigError, match=message):
        build(argv)


def test_an_unparseable_bind_says_the_form_expected():
    with pytest.raises(ConfigError, match=r"^--bind: '::1:4000': write IPv6 addresses in "
                                          r"brackets, as \[::1\]:4000$"):
        build(["--bind", "::1:4000"])


def test_a_path_binds_a_unix_socket():
    assert build(["--bind", "/run/app.sock", "--bind", "./b.sock"]).addresses == (
        Address(path="/run/app.sock"), Address(path="./b.sock"))


def test_no_option_help_states_its_default_itself():
    # add_arguments appends "(default X; env ...)" to every help: a default written in
    # the help too would be printed twice.
    import dataclasses
    for field in dataclasses.fields(Config):
        if field.metadata:
            assert "default" not in field.metadata["help"], field.name


def test_a_bad_environment_value_names_its_variable():
    with pytest.raises(ConfigError, match="^SCGIKIT_WORKERS: 'many' is not a whole number$"):
        build([], {"SCGIKIT_WORKERS": "many"})
    with pytest.raises(ConfigError, match="^SCGIKIT_WORKERS: 0 is out of range: 1 to 1024$"):
        build([], {"SCGIKIT_WORKERS": "0"})


def test_config_is_frozen():
    config = build([])
    with pytest.raises(AttributeError):
        config.workers = 9
    assert config.replace(workers=9).workers == 9


def test_options_page_lists_every_option_with_its_variable_and_file_key():
    page = options_page()
    import dataclasses
    for field in dataclasses.fields(Config):
        if field.metadata:
            assert f"`{env_name(field.name)}`" in page
            if field.metadata["in_file"]:
                assert f"| `{file_key(field)}`: " in page


def test_the_configuration_file_is_named_by_scgikit_config():
    assert env_name("config_file") == "SCGIKIT_CONFIG"
    assert env_name("max_requests") == "SCGIKIT_MAX_REQUESTS"
