"""The one configuration object of the server, and the table it is declared in.

Each option is declared once, as a field of ``Config`` with its flag, its
environment variable, its default and its help.  The command line, the
environment (``SCGIKIT_<NAME>``), the keys of a TOML configuration file
(``--config``; each key is the long flag without its dashes) and the docs are
all generated from that table (``options.py``).  A ``Config`` checks every value
as it is made, so an unusable setting is one clear ``ConfigError`` at start.  It
is built once, in the CLI or by ``scgi_server.SCGIServer``, and passed down:
master -> worker -> connection.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .accesslog import DEFAULT_ACCESS_FORMAT, AccessFormatError, compile_access_format
from .addresses import ADDRESS_FORMS, Address, AddressError, parse_address
from .allow import AllowList, AllowListError
from .protocol import DEFAULT_MAX_HEADER_SIZE

__all__ = ["INTERFACES", "Config", "ConfigError", "Kind", "env_name", "file_key", "option_fields"]

DEFAULT_BIND = "127.0.0.1:4000"
#: The session cookie the scgi package's session_server looks for (Quixote's).
SESSION_ID_PATTERN = r'session="(?P<id>[A-Za-z0-9\\/_=+-]+)"'
#: What ``--interface`` takes: ``auto`` tells the app's kind from the app (``apps.loader``).
INTERFACES = ("auto", "wsgi", "asgi", "handler")


class ConfigError(ValueError):
    """A setting the operator gave is unusable; the message names it."""


def _option(
    flags: Sequence[str], help: str, *, default: Any = None,
    factory: Callable[[], Any] | None = None, parse: Callable[[str], Any] = str,
    repeat: bool = False, metavar: str | None = None, shown: str | None = None,
    env: str | None = None, in_file: bool = True, switch: bool = False,
) -> Any:
    # A switch (--reload) takes no value on the command line; its variable takes 1 or 0,
    # a configuration file true or false.
    meta = {"flags": tuple(flags), "help": help, "parse": _switch if switch else parse,
            "repeat": repeat, "metavar": metavar, "switch": switch,
            "shown": shown if shown is not None else _shown(default),
            "env": env, "in_file": in_file,
            "kind": _BOOLEAN if switch else _KINDS.get(parse, _STRING)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if default == "":
        return "empty"
    return str(default)


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(f"{text!r} is not an octal file mode such as 0660") from None


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise ConfigError(f"{text!r} is not a size such as 65536, 64k or 10m")
    return int(number) * scale


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{text!r}: a duration cannot be negative")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"{text!r} is not a whole number")
    return int(text)


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"--env takes KEY=VALUE, not {text!r}")
    return name, value


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off", ""):
        return False
    raise ConfigError(f"{text!r}: expected 1 or 0")


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Kind:
    """What a configuration file gives for an option, by the option's parser."""

    one: str  # "an integer": for error messages
    many: str  # "integers": for arrays of them
    types: tuple[type, ...]

    def accepts(self, value: object) -> bool:
        # A TOML boolean is a Python int too: true is not a count of workers.
        return not isinstance(value, bool) and isinstance(value, self.types)


_STRING = Kind("a string", "strings", (str,))


class _Boolean(Kind):
    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


_BOOLEAN = _Boolean("true or false", "booleans", (bool,))
_KINDS: dict[Callable[[str], Any], Kind] = {
    _count: Kind("an integer", "integers", (int,)),
    _positive_float: Kind("a number of seconds", "numbers of seconds", (int, float)),
    _size: Kind('an integer or a string such as "64k"', 'integers or strings such as "64k"',
                 (int, str)),
    # A TOML integer 660 would be the decimal 660: modes are written as strings.
    _octal: Kind('a string of octal digits such as "0660"', "strings of octal digits", (str,)),
    _env_pair: Kind('a string "KEY=VALUE"', 'strings "KEY=VALUE"', (str,)),
}


@dataclass(frozen=True)
class Config:
    """Everything the server needs to know, frozen once the CLI has built it."""

    target: str = ""
    config_file: str | None = _option(
        ["-c", "--config"], "read options from this TOML file (keys below); the environment "
        "and the command line override it", default=None, metavar="FILE",
        env="SCGIKIT_CONFIG", in_file=False)
    bind: tuple[str, ...] = _option(
        ["-b", "--bind"], "address to listen on: HOST:PORT, [::1]:PORT, a unix socket as "
        "/path, ./path or unix:PATH, or fd://N; repeatable; without it, systemd's LISTEN_FDS "
        "sockets if any",
        factory=tuple, repeat=True, metavar="ADDRESS", shown=DEFAULT_BIND)
    socket_mode: int = _option(
        ["--socket-mode"], "permissions of unix socket files, in octal", default=0o660,
        parse=_octal, metavar="MODE", shown="0660")
    backlog: int = _option(
        ["--backlog"], "listen queue length of each socket", default=2048, parse=_count,
        metavar="N")
    workers: int = _option(
        ["-w", "--workers"], "worker processes",
        factory=_default_workers, parse=_count, metavar="N", shown="number of CPUs")
    interface: str = _option(
        ["--interface"], "what kind of app TARGET names: auto (a subclass of SCGIHandler or a "
        "function marked @scgikit.scgi_server.handler_factory is a classic handler, an async "
        "callable is ASGI, any other callable taking (environ, start_response) WSGI), wsgi, "
        "asgi or handler (a classic handler: "
        "an SCGIHandler subclass, or any callable that takes parent_fd and returns a handler, "
        "as the scgi package's SCGIServer takes it)", default="auto",
        parse=lambda text: text.lower(), metavar="KIND")
    worker: str = _option(
        ["-k", "--worker"], "worker model: sync (one request at a time per process), threads "
        "(--threads per process, WSGI) or asyncio (ASGI)", default="",
        parse=lambda text: text.lower(), metavar="MODEL", shown="asyncio for an ASGI app, "
        "threads for a WSGI app with --threads above 1, else sync")
    threads: int = _option(
        ["--threads"], "requests each worker process runs at once, in threads (the threads "
        "model)", default=1, parse=_count, metavar="N")
    lifespan: str = _option(
        ["--lifespan"], "ASGI lifespan events: auto (sent; an app that does not support them "
        "is served anyway), on (an app that fails them does not start) or off", default="auto",
        parse=lambda text: text.lower(), metavar="MODE")
    loop: str = _option(
        ["--loop"], "event loop of the asyncio model: auto (uvloop when installed), asyncio "
        "or uvloop", default="auto", parse=lambda text: text.lower(), metavar="LOOP")
    max_requests: int = _option(
        ["--max-requests"], "recycle a worker after this many requests (0: never), counted as "
        "they reach the app; it first serves the connections it holds and those queued for it "
        "at that moment, so it may serve a few more",
        default=0, parse=_count, metavar="N")
    max_requests_jitter: int = _option(
        ["--max-requests-jitter"], "add 0..N at random to --max-requests per worker, so "
        "workers do not all restart at once", default=0, parse=_count, metavar="N")
    timeout: float = _option(
        ["-t", "--timeout"], "kill and replace a worker busy with one request for longer "
        "than this (0: never)", default=30.0, parse=_positive_float, metavar="SECONDS")
    graceful_timeout: float = _option(
        ["--graceful-timeout"], "on stop or reload, time left to workers to finish their "
        "requests before they are killed", default=30.0, parse=_positive_float,
        metavar="SECONDS")
    header_timeout: float = _option(
        ["--header-timeout"], "deadline for the whole header, from the connection's accept: "
        "a client that has not sent it by then is dropped", default=10.0,
        parse=_positive_float, metavar="SECONDS")
    body_timeout: float = _option(
        ["--body-timeout"], "deadline for the whole request body, from the end of the "
        "header: a client that has not sent it by then is answered 408", default=30.0,
        parse=_positive_float, metavar="SECONDS")
    body_buffer_size: int = _option(
        ["--body-buffer-size"], "a body up to this size is received whole before the app "
        "starts, so a slow client never holds the app; larger ones stream to the app",
        default=256 * 1024, parse=_size, metavar="BYTES", shown="256k")
    max_pending: int = _option(
        ["--max-pending"], "connections a worker keeps waiting for their header or buffered "
        "body; beyond this the oldest is dropped", default=4096, parse=_count, metavar="N")
    linger_timeout: float = _option(
        ["--linger-timeout"], "after the answer, how long the unread rest of a request body "
        "is read and dropped before closing (closing with unread bytes makes the kernel "
        "reset the connection, and the front end may lose the answer)", default=5.0,
        parse=_positive_float, metavar="SECONDS")
    linger_size: int = _option(
        ["--linger-size"], "after the answer, the most unread body bytes read and dropped "
        "before closing", default=64 * 1024 * 1024, parse=_size, metavar="BYTES",
        shown="64m")
    boot_timeout: float = _option(
        ["--boot-timeout"], "kill a worker that has not loaded the app within this time "
        "(a failed start, or a failed reload)", default=60.0, parse=_positive_float,
        metavar="SECONDS")
    max_header_size: int = _option(
        ["--max-header-size"], "largest header netstring accepted (answered 431 beyond)",
        default=DEFAULT_MAX_HEADER_SIZE, parse=_size, metavar="BYTES")
    max_body_size: int | None = _option(
        ["--max-body-size"], "largest request body accepted (answered 413 beyond)",
        default=None, parse=_size, metavar="BYTES", shown="unlimited")
    allow_from: tuple[str, ...] = _option(
        ["--allow-from"], "accept TCP connections only from these addresses or CIDR "
        "ranges (e.g. 127.0.0.1 10.0.0.0/8); repeatable; others are closed before a byte "
        "is read", factory=tuple, repeat=True, metavar="NETWORK", shown="any")
    socket_owner: str | None = _option(
        ["--socket-owner"], "USER[:GROUP] owning unix socket files", default=None,
        metavar="USER:GROUP", shown="--user and --group when given, else the user who "
        "starts the server")
    script_name: str = _option(
        ["--script-name"], "URL prefix the app is mounted under, when the front end does "
        "not send PATH_INFO", default="", metavar="PREFIX")
    log_level: str = _option(
        ["--log-level"], "debug, info, warning, error or critical", default="info",
        parse=lambda text: text.lower(), metavar="LEVEL")
    access_log: str | None = _option(
        ["--access-log"], "write an access log line per request to PATH, or - for stderr",
        default=None, metavar="PATH")
    access_log_format: str = _option(
        ["--access-log-format"], "the access log line: text with {named} fields (the "
        "fields are listed in docs/server.md), or combined (nginx's) or json (every field "
        "as a JSON object)", default=DEFAULT_ACCESS_FORMAT, metavar="FORMAT",
        shown=f"`{DEFAULT_ACCESS_FORMAT}`")
    log_format: str = _option(
        ["--log-format"], "the error log on stderr: text, or json (one object per line: "
        "time, level, pid, logger, message and any exception)", default="text",
        parse=lambda text: text.lower(), metavar="FORMAT")
    pid_file: str | None = _option(
        ["--pid"], "write the master's process id to FILE", default=None, metavar="FILE")
    chdir: str | None = _option(
        ["--chdir"], "change to DIR before loading the app", default=None, metavar="DIR")
    env: tuple[tuple[str, str], ...] = _option(
        ["--env"], "set an environment variable for the app; repeatable", factory=tuple,
        parse=_env_pair, repeat=True, metavar="KEY=VALUE", shown="none")
    user: str | None = _option(
        ["--user"], "run workers as this user (when started as root)", default=None,
        metavar="USER")
    group: str | None = _option(
        ["--group"], "run workers as this group (when started as root)", default=None,
        metavar="GROUP")
    http: str | None = _option(
        ["--http"], "development only: also accept HTTP/1.1 on ADDRESS and forward it over "
        "SCGI to this server (needs scgikit[http])", default=None, metavar="ADDRESS")
    reload: bool = _option(
        ["--reload"], "development only: reload the workers (as on SIGHUP) when a watched "
        "file is created, changed or deleted; every --workers is replaced",
        default=False, switch=True, shown="off")
    reload_dir: tuple[str, ...] = _option(
        ["--reload-dir"], "with --reload, watch this folder instead; repeatable",
        factory=tuple, repeat=True, metavar="DIR", shown="the current folder after --chdir, "
        "and the folder of a path/to/file.py TARGET")
    reload_include: tuple[str, ...] = _option(
        ["--reload-include"], "with --reload, also watch files whose name matches GLOB (a "
        "GLOB with a / matches the path under the watched folder); repeatable",
        factory=tuple, repeat=True, metavar="GLOB",
        shown="*.py only")
    reload_exclude: tuple[str, ...] = _option(
        ["--reload-exclude"], "with --reload, also skip files and folders whose name matches "
        "GLOB (a GLOB with a / matches the path under the watched folder); repeatable; an "
        "exclusion wins over an inclusion",
        factory=tuple, repeat=True, metavar="GLOB", shown="hidden files and folders, "
        "bytecode caches (.pyc files and their folders), virtual environments (a folder "
        "holding pyvenv.cfg)")
    stats: str | None = _option(
        ["--stats"], "serve Prometheus metrics at http://ADDRESS/metrics (HOST:PORT or a unix "
        "socket, as --bind), answered by the master", default=None, metavar="ADDRESS")
    session_affinity: bool = _option(
        ["--session-affinity"], "send the requests of one session to one worker process, in "
        "the order they came and one at a time, as the scgi package's session_server does: "
        "the master reads each request's head to find its session (--session-pattern on the "
        "cookie, else the client's address) and hands the connection over",
        default=False, switch=True, shown="off")
    session_pattern: str = _option(
        ["--session-pattern"], "with --session-affinity, the regular expression searched in "
        "the Cookie header for the session; its group named id is the session",
        default=SESSION_ID_PATTERN, metavar="REGEX")
    session_queue: int = _option(
        ["--session-queue"], "with --session-affinity, the requests one session may have "
        "waiting behind the one it runs; beyond, a request is answered 503",
        default=15, parse=_count, metavar="N")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.interface not in INTERFACES:
            raise ConfigError(f"--interface {self.interface!r}: expected auto, wsgi, asgi or "
                              "handler")
        if self.worker not in ("", "sync", "threads", "asyncio"):
            raise ConfigError(f"--worker {self.worker!r}: expected sync, threads or asyncio")
        if self.threads < 1:
            raise ConfigError("--threads must be at least 1")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"--lifespan {self.lifespan!r}: expected auto, on or off")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError(f"--loop {self.loop!r}: expected auto, asyncio or uvloop")
        if self.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"--log-level {self.log_level!r} is not a log level")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"--log-format {self.log_format!r}: expected text or json")
        _check_access_format(self.access_log_format)
        if self.script_name and (
            not self.script_name.startswith("/") or self.script_name.endswith("/")
        ):
            raise ConfigError(
                f"--script-name {self.script_name!r} must start with '/' and not end with it"
            )
        for text in self.bind:
            try:
                parse_address(text)
            except AddressError as exc:
                raise ConfigError(f"--bind: {exc}; expected {ADDRESS_FORMS}") from None
        if self.http is not None:
            _check_http(self.http)
        if not self.reload and (self.reload_dir or self.reload_include or self.reload_exclude):
            raise ConfigError("--reload-dir, --reload-include and --reload-exclude apply "
                              "only with --reload")
        if self.stats is not None:
            try:
                parse_address(self.stats)
            except AddressError as exc:
                raise ConfigError(f"--stats: {exc}; expected {ADDRESS_FORMS}") from None
        _check_sessions(self)
        if self.allow_from:
            try:
                AllowList(self.allow_from)
            except AllowListError as exc:
                raise ConfigError(f"--allow-from: {exc}") from None
        if self.socket_owner is not None:
            user, sep, group = self.socket_owner.partition(":")
            if not user or (sep and (not group or ":" in group)):
                raise ConfigError(
                    f"--socket-owner: {self.socket_owner!r} is not USER or USER:GROUP"
                )

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(parse_address(text) for text in self.bind or (DEFAULT_BIND,))

    @property
    def body_limit(self) -> int:
        """--max-body-size as the C loops take it: ``sys.maxsize`` where it is unlimited."""
        return sys.maxsize if self.max_body_size is None else self.max_body_size

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _check_sessions(config: Config) -> None:
    """--session-pattern compiles and names the session; --session-queue takes at least one."""
    try:
        pattern = re.compile(config.session_pattern)
    except re.error as exc:
        raise ConfigError(f"--session-pattern {config.session_pattern!r}: {exc}") from None
    if "id" not in pattern.groupindex:
        raise ConfigError(f"--session-pattern {config.session_pattern!r} has no group named "
                          "id, as in session=\"(?P<id>[^\"]+)\"")
    if config.session_queue < 1:
        raise ConfigError("--session-queue must be at least 1")


def _check_access_format(text: str) -> None:
    try:
        compile_access_format(text)
    except AccessFormatError as exc:
        raise ConfigError(f"--access-log-format: {exc}") from None


def _check_http(address: str) -> None:
    """``--http``: an address the gateway can listen on, and h11 to speak HTTP with."""
    try:
        if parse_address(address).fd is not None:
            raise AddressError(f"{address!r}: the gateway cannot listen on an fd:// address")
    except AddressError as exc:
        raise ConfigError(f"--http: {exc}") from None
    try:
        import h11  # noqa: F401 - only whether it is there
    except ImportError:
        # Refused here, before anything starts: a server started without the gateway
        # it was asked for looks like it works, until the browser cannot connect.
        raise ConfigError(
            "--http: the development HTTP gateway needs h11, which is not installed: "
            "pip install 'scgikit[http]'"
        ) from None


def option_fields() -> list[dataclasses.Field[Any]]:
    """The options' fields, in the order of the table."""
    return [f for f in dataclasses.fields(Config) if f.metadata]


def env_name(name: str) -> str:
    """The environment variable of the option whose field is ``name``."""
    for f in option_fields():
        if f.name == name and f.metadata["env"]:
            return str(f.metadata["env"])
    return "SCGIKIT_" + name.upper()


def file_key(f: dataclasses.Field[Any]) -> str:
    """An option's key in a configuration file: its long flag without the dashes."""
    return str(f.metadata["flags"][-1]).removeprefix("--")
