"""Where a ``Config`` comes from: the command line, the environment, a TOML file; and its docs.

All of it is generated from the field table in ``config.py``: each field's flags
make its command-line option (``add_arguments``), its name the ``SCGIKIT_<NAME>``
variable (``env_name``) and the file's key (``file_key``), and its help the row of
``docs/options.md`` (``options_page``).  The command line wins over the
environment, which wins over the file, which wins over the defaults.  Every
value is parsed and checked as the same text on the command line would be, so an
error names the option, the variable or the file's key and line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from .config import Config, ConfigError, Kind, env_name, file_key, flag, option_fields

__all__ = ["EXAMPLE_FILE", "FILE_TARGET_KEY", "add_arguments", "from_arguments", "options_page",
           "options_table", "read_config_file"]

#: The key of a configuration file that names the app, as TARGET does on the command line.
FILE_TARGET_KEY = "app"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of ``Config`` to ``parser`` (parsed later by ``from_arguments``)."""
    for f in option_fields():
        meta = f.metadata
        shown = f" (default {meta['shown']}; env {env_name(f.name)})"
        if meta["switch"]:
            parser.add_argument(*meta["flags"], dest=f.name, help=meta["help"] + shown,
                                action="store_const", const="1", default=None)
            continue
        parser.add_argument(
            *meta["flags"], dest=f.name, metavar=meta["metavar"], help=meta["help"] + shown,
            action="append" if meta["repeat"] else "store", default=None,
        )


def from_arguments(
    namespace: argparse.Namespace, environ: Mapping[str, str], target: str | None = None
) -> Config:
    """Build the ``Config``: the command line wins over ``SCGIKIT_*`` variables, which win
    over the ``--config`` file, which wins over the defaults.  ``target`` (TARGET on the
    command line) wins over the file's ``app``.  An error names where its value came from:
    the flag, the variable, or the file and its key."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}  # field -> the variable or file key it came from; flags: none
    for f in option_fields():
        raw = getattr(namespace, f.name, None)
        source = None
        if raw is None and env_name(f.name) in environ:
            source = env_name(f.name)
            raw = _env_items(environ[source], source) if f.metadata["repeat"] else \
                environ[source]
        if raw is None:
            continue
        values[f.name] = _parsed(f, raw, source)
        if source is not None:
            where[f.name] = source
    file_target = ""
    if values.get("config_file"):
        from_file, file_target = read_config_file(values["config_file"])
        path = values["config_file"]
        where = {name: f"{path}: key {file_key(_field(name))!r}" for name in from_file
                 if name not in values} | where
        values = from_file | values
    return Config(target=target or file_target, sources=where, **values)


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in option_fields() if f.name == name)


def _env_items(text: str, name: str) -> list[str]:
    """A repeatable option's variable: values separated by spaces, quoted as in a shell
    where one holds a space (SCGIKIT_BIND='"/srv/my app/x.sock" 127.0.0.1:4000')."""
    try:
        return shlex.split(text)
    except ValueError as exc:  # "No closing quotation"
        raise ConfigError(f"{name}: {str(exc).lower()}: values are separated by spaces, "
                          "and one that holds a space is quoted, as in a shell") from None


def _parsed(f: dataclasses.Field[Any], raw: Any, where: str | None) -> Any:
    """One option's text (or texts) parsed; an error blamed on ``where`` (None: the flag)."""
    meta = f.metadata
    try:
        if meta["repeat"]:
            return tuple(meta["parse"](item) for item in raw)
        return meta["parse"](raw)
    except ValueError as exc:  # ConfigError too
        raise ConfigError(getattr(exc, "message", str(exc)), f.name).blamed(where) from None


def read_config_file(path: str) -> tuple[dict[str, Any], str]:
    """The options a TOML file sets, as ``Config`` field values, and its ``app`` (or "").

    Every key and value is parsed here, so an error names the file and the key; the
    values together are checked with the rest, by ``Config``.
    """
    data = _load_toml(path)
    keys = {file_key(f): f for f in option_fields() if f.metadata["in_file"]}
    values: dict[str, Any] = {}
    target = ""
    for key, value in data.items():
        if key == FILE_TARGET_KEY:
            if not isinstance(value, str):
                raise ConfigError(f"{path}: key {key!r}: expected a string such as "
                                  f'"myapp:app", got {_toml_type(value)}')
            target = value
        elif key in keys:
            values[keys[key].name] = _file_value(path, key, keys[key], value)
        else:
            raise ConfigError(f"{path}: unknown key {key!r}{_key_hint(key, keys)}")
    return values, target


def _load_toml(path: str) -> dict[str, Any]:
    # Read and decoded here, not by the parser: tomli before 1.2 (Python 3.10) reads text.
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"--config {path!r}: not a file name") from None
    if sys.version_info >= (3, 11):  # here: only a --config file needs it
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(path, str(exc), text)) from None
    return data


def _toml_error(path: str, message: str, text: str) -> str:
    """``FILE:LINE: not valid TOML: what``, from the parser's "(at line L, column C)"."""
    found = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if found:
        return (f"{path}:{found[1]}: not valid TOML: {message[:found.start()]} "
                f"(column {found[2]}){_mode_hint(text.splitlines()[int(found[1]) - 1])}")
    if message.endswith(" (at end of document)"):
        return (f"{path}:{len(text.splitlines())}: not valid TOML: "
                f"{message.removesuffix(' (at end of document)')} (at the end of the file)")
    return f"{path}: not valid TOML: {message}"


def _mode_hint(line: str) -> str:
    """A mode written as a TOML number (0660 is not one): say how to write it."""
    found = re.match(r"\s*([\w-]+)\s*=\s*(0[0-7]+)\s*(#.*)?$", line)
    if not found:
        return ""
    return f": write a file mode as a string, {found[1]} = \"{found[2]}\""


def _file_value(path: str, key: str, f: dataclasses.Field[Any], value: object) -> Any:
    """One option's value from the file: its TOML type checked, then parsed as the same
    text on the command line would be."""
    meta = f.metadata
    kind: Kind = meta["kind"]
    if meta["repeat"]:
        if not isinstance(value, list) or not all(kind.accepts(item) for item in value):
            raise ConfigError(f"{path}: key {key!r}: expected an array of {kind.many}, "
                              f"got {_toml_type(value)}")
        return _parsed(f, [str(item) for item in value], f"{path}: key {key!r}")
    if not kind.accepts(value):
        raise ConfigError(f"{path}: key {key!r}: expected {kind.one}, got {_toml_type(value)}")
    return _parsed(f, str(value), f"{path}: key {key!r}")


def _toml_type(value: object) -> str:
    if isinstance(value, list) and value:
        inner = {_toml_type(item) for item in value}
        return "an array of " + (" and ".join(sorted(inner)) if len(inner) < 3 else "mixed values")
    names = [(bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
             (list, "an empty array"), (dict, "a table")]
    for cls, name in names:
        if isinstance(value, cls):
            return f"{name} ({json.dumps(value)})" if cls in (bool, int, float, str) else name
    return "a date or time"


def _key_hint(key: str, keys: Mapping[str, dataclasses.Field[Any]]) -> str:
    if key == "config":
        return ": a configuration file cannot name another"
    by_name = {f.name: spelled for spelled, f in keys.items()}
    spelled = by_name.get(key.replace("-", "_"))
    if spelled:
        return f": keys are spelled as the long flags, here {spelled!r}"
    import difflib  # here: only a misspelled key needs it

    close = difflib.get_close_matches(key, [*keys, FILE_TARGET_KEY], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def options_table() -> str:
    """The options as a Markdown table, for the docs."""
    rows = ["| option | environment | file key | on HUP | default | meaning |",
            "|---|---|---|---|---|---|"]
    for f in option_fields():
        meta = f.metadata
        flag = meta["flags"][-1] + (f" {meta['metavar']}" if meta["metavar"] else "")
        kind: Kind = meta["kind"]
        key = (f"`{file_key(f)}`: " + (f"array of {kind.many}" if meta["repeat"] else
                                        kind.one.removeprefix("an ").removeprefix("a "))
               if meta["in_file"] else "none")
        rows.append(f"| `{flag}` | `{env_name(f.name)}` | {key} | {_on_hup(f)} | "
                    f"{meta['shown']} | {meta['help']} |")
    return "\n".join(rows)


def _on_hup(f: dataclasses.Field[Any]) -> str:
    """What a HUP does with the option's key of a changed file: re-read, or kept until a
    restart (always, or with a switch on)."""
    restart = f.metadata["restart"]
    if not f.metadata["in_file"]:
        return "-"
    if restart is True:
        return "restart"
    return f"re-read; restart with `{flag(restart)}`" if restart else "re-read"


#: The example of docs/options.md (a test builds a Config from it).
EXAMPLE_FILE = """\
app = "myapp:app"
bind = ["unix:/run/myapp.sock", "127.0.0.1:4000"]
workers = 4
max-requests = 1000
max-requests-jitter = 100
timeout = 60
max-body-size = "10m"
socket-mode = "0660"
env = ["MYAPP_SETTINGS=/etc/myapp.ini"]
"""


def options_page() -> str:
    """docs/options.md, generated from the field table."""
    return (
        "# `scgikit serve` options\n\n"
        "Generated from the field table in `src/scgikit/config.py` by `scripts/make-docs` (a test\n"
        "keeps this page in step with it). `scgikit check` takes the same options.\n\n"
        "Each option can be given on the command line, as an environment variable, or as a key\n"
        "of a TOML file named by `--config FILE` (or `SCGIKIT_CONFIG`). The command line wins\n"
        "over the environment, which wins over the file, which wins over the default.\n"
        "Repeatable options take several values in their variable, separated by spaces; a\n"
        "value that holds a space is quoted as in a shell:\n"
        "`SCGIKIT_BIND='\"/srv/my app/app.sock\" 127.0.0.1:4000'`.\n\n"
        "## The configuration file\n\n"
        "A key is the option's long flag without its dashes (`max-requests`, never\n"
        "`max_requests`), and `app` names the app as TARGET does; a TARGET on the command line\n"
        "wins over it, and with `app` in the file `scgikit serve -c FILE` needs no TARGET.\n"
        "Repeatable options take arrays; durations are numbers of seconds; sizes are integers\n"
        "(bytes) or strings such as `\"64k\"` or `\"10m\"`; modes are strings of octal digits.\n"
        "Paths mean what they mean on the command line: a relative one is not taken from the\n"
        "file's folder.\n"
        "An unknown key, a value of the wrong type, a file that is not valid TOML or that\n"
        "cannot be read stops `scgikit serve` with one line naming the file (and the key, or the\n"
        "line) and exit status 2. For example:\n\n"
        "```toml\n" + EXAMPLE_FILE + "```\n\n"
        "A HUP to the master reads the file again, with the same command line and the\n"
        "environment the server was started with, so a flag or a variable still wins over it.\n"
        "The column *on HUP* says what becomes of a changed key: *re-read*, it takes effect\n"
        "for the new workers and for the master's own decisions; *restart*, the master built\n"
        "something from it at start (a socket, the pid file, a user switch...), so it logs\n"
        "`Reload: --bind changed in FILE: takes a restart; keeping 127.0.0.1:4000` and keeps\n"
        "the value in force. `app` is re-read, but with `--preload` takes a restart. A file\n"
        "that no longer reads, parses or passes the checks changes nothing: the master logs one\n"
        "error line naming the file and the problem (`Reload: keeping the settings in force:\n"
        "FILE: key 'workers': 0 is out of range: 1 to 1024`), and still reloads the workers.\n\n"
        "## Options\n\n"
        + options_table() + "\n"
    )
