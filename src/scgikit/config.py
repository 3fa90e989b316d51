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
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .accesslog import DEFAULT_ACCESS_FORMAT, AccessFormatError, compile_access_format
from .addresses import Address, AddressError, parse_address
from .arguments import is_utf8
from .option_kinds import BOOLEAN as _BOOLEAN
from .option_kinds import KINDS as _KINDS
from .option_kinds import MAX_SIZE, Kind
from .option_kinds import STRING as _STRING
from .option_kinds import count as _count
from .option_kinds import env_pair as _env_pair
from .option_kinds import limits_of as _limits
from .option_kinds import lower as _lower
from .option_kinds import octal as _octal
from .option_kinds import seconds as _positive_float
from .option_kinds import size as _size
from .option_kinds import switch as _switch
from .protocol import DEFAULT_MAX_HEADER_SIZE

__all__ = ["INTERFACES", "MAX_WORKERS", "Config", "ConfigError", "Kind", "env_name", "file_key",
           "flag", "option_fields"]

DEFAULT_BIND = "127.0.0.1:4000"
#: The most worker processes a master runs (--workers, and SIGTTIN adding one).
MAX_WORKERS = 1024
#: The smallest --max-memory (but 0, never): a Python process alone is larger.
MIN_MEMORY = 1 << 20
#: The session cookie the scgi package's session_server looks for (Quixote's).
SESSION_ID_PATTERN = r'session="(?P<id>[A-Za-z0-9\\/_=+-]+)"'
#: What ``--interface`` takes: ``auto`` tells the app's kind from the app (``apps.loader``).
INTERFACES = ("auto", "wsgi", "asgi", "handler")


class ConfigError(ValueError):
    """A setting the operator gave is unusable; the message names it and where it came from.

    ``option`` is the field the error blames, when there is one: the message then
    starts with its flag (``--workers: must be at least 1``), or, once ``blamed`` on
    the value's source, with that (``SCGIKIT_WORKERS: ...``, ``FILE: key 'workers': ...``).
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        self.message = message
        self.option = option
        super().__init__(f"{flag(option)}: {message}" if option else message)

    def blamed(self, where: str | None) -> ConfigError:
        """This error naming ``where`` its value came from (None: the flag)."""
        if where is None or self.option is None:
            return self
        error = ConfigError(f"{where}: {self.message}")
        error.option = self.option
        return error


def _option(
    flags: Sequence[str], help: str, *, default: Any = None,
    factory: Callable[[], Any] | None = None, parse: Callable[[str], Any] = str,
    repeat: bool = False, metavar: str | None = None, shown: str | None = None,
    env: str | None = None, in_file: bool = True, switch: bool = False,
    limits: tuple[float, float] | None = None, choices: tuple[str, ...] = (),
    restart: bool | str = False,
) -> Any:
    # A switch (--reload) takes no value on the command line; its variable takes 1 or 0,
    # a configuration file true or false.  ``restart``: the master builds something from
    # it once, at start, so a HUP that re-reads the --config file keeps its value
    # (``master/reconfigure.py``); the name of a switch field: only when that is on.
    meta = {"flags": tuple(flags), "help": help, "parse": _switch if switch else parse,
            "repeat": repeat, "metavar": metavar, "switch": switch, "restart": restart,
            "shown": shown if shown is not None else _shown(default),
            "env": env, "in_file": in_file, "limits": _limits(parse, limits), "choices": choices,
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


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    """Everything the server needs to know, frozen once the CLI has built it."""

    target: str = ""
    #: Where each value that came from elsewhere than a flag came from, by field name
    #: ("SCGIKIT_WORKERS", "FILE: key 'workers'"): errors name it (``ConfigError.blamed``).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    config_file: str | None = _option(
        ["-c", "--config"], "read options from this TOML file (keys below); the environment "
        "and the command line override it", default=None, metavar="FILE",
        env="SCGIKIT_CONFIG", in_file=False)
    bind: tuple[str, ...] = _option(
        ["-b", "--bind"], "address to listen on: HOST:PORT, [::1]:PORT, a unix socket as "
        "/path, ./path or unix:PATH, or fd://N; repeatable; without it, systemd's LISTEN_FDS "
        "sockets if any",
        factory=tuple, repeat=True, metavar="ADDRESS", shown=DEFAULT_BIND, restart=True)
    socket_mode: int = _option(
        ["--socket-mode"], "permissions of unix socket files, in octal", default=0o660,
        parse=_octal, metavar="MODE", shown="0660", restart=True)
    backlog: int = _option(
        ["--backlog"], "listen queue length of each socket (1 to 65535; the kernel caps it "
        "at net.core.somaxconn)", default=2048, parse=_count, metavar="N", limits=(1, 65535),
        restart=True)
    workers: int = _option(
        ["-w", "--workers"], f"worker processes (1 to {MAX_WORKERS})",
        factory=_default_workers, parse=_count, metavar="N", shown="number of CPUs",
        limits=(1, MAX_WORKERS))
    interface: str = _option(
        ["--interface"], "what kind of app TARGET names: auto (a subclass of SCGIHandler or a "
        "function marked @scgikit.scgi_server.handler_factory is a classic handler, an async "
        "callable is ASGI, any other callable taking (environ, start_response) WSGI), wsgi, "
        "asgi or handler (a classic handler: "
        "an SCGIHandler subclass, or any callable that takes parent_fd and returns a handler, "
        "as the scgi package's SCGIServer takes it)", default="auto",
        parse=_lower, choices=INTERFACES, metavar="KIND", restart="preload")
    worker: str = _option(
        ["-k", "--worker"], "worker model: sync (one request at a time per process), threads "
        "(--threads per process, WSGI) or asyncio (ASGI)", default="",
        parse=_lower, choices=("", "sync", "threads", "asyncio"), metavar="MODEL",
        shown="asyncio for an ASGI app, threads for a WSGI app with --threads above 1, else sync")
    threads: int = _option(
        ["--threads"], "requests each worker process runs at once, in threads (the threads "
        "model; 1 to 4096)", default=1, parse=_count, metavar="N", limits=(1, 4096))
    lifespan: str = _option(
        ["--lifespan"], "ASGI lifespan events: auto (sent; an app that does not support them "
        "is served anyway), on (an app that fails them does not start) or off", default="auto",
        parse=_lower, choices=("auto", "on", "off"), metavar="MODE")
    loop: str = _option(
        ["--loop"], "event loop of the asyncio model: auto (uvloop when installed), asyncio "
        "or uvloop", default="auto", parse=_lower, choices=("auto", "asyncio", "uvloop"),
        metavar="LOOP")
    max_concurrency: int = _option(
        ["--max-concurrency"], "connections each asyncio worker holds at once (requests in "
        "the app, and those still arriving; 0: no cap); at the cap it stops accepting, and "
        "new connections wait in the listen queue for another worker, or for this one",
        default=0, parse=_count, metavar="N", limits=(0, 10**6))
    max_requests: int = _option(
        ["--max-requests"], "recycle a worker after this many requests (0: never), counted as "
        "they reach the app; it first serves the connections it holds and those queued for it "
        "at that moment, so it may serve a few more",
        default=0, parse=_count, metavar="N", limits=(0, 10**9))
    max_requests_jitter: int = _option(
        ["--max-requests-jitter"], "add 0..N at random to --max-requests per worker, so "
        "workers do not all restart at once", default=0, parse=_count, metavar="N",
        limits=(0, 10**9))
    max_memory: int = _option(
        ["--max-memory"], "recycle a worker whose resident memory (RSS, read about once a "
        "second) is over this size (0: never): a new worker starts, and once it is ready the "
        "old one finishes what it holds and exits; one worker at a time",
        default=0, parse=_size, metavar="SIZE", shown="0")
    max_lifetime: float = _option(
        ["--max-lifetime"], "recycle a worker once it has run this long (0: never), as "
        "--max-memory does", default=0.0, parse=_positive_float, metavar="SECONDS")
    max_lifetime_jitter: float = _option(
        ["--max-lifetime-jitter"], "add 0..SECONDS at random to --max-lifetime per worker, so "
        "workers do not all restart at once", default=0.0, parse=_positive_float,
        metavar="SECONDS")
    timeout: float = _option(
        ["-t", "--timeout"], "end a request that runs longer than this (0: never): the sync "
        "model kills and replaces its worker; threads answers it 504 (or cuts its answer "
        "short) and replaces the worker once its other requests are over; asyncio cancels it "
        "and answers 504 (or cuts), serving on", default=30.0, parse=_positive_float,
        metavar="SECONDS")
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
    front_end_buffering: bool = _option(
        ["--front-end-buffering"], "let nginx buffer answers that stream (do not send "
        "X-Accel-Buffering: no with an answer whose body is not known whole as its head "
        "goes out, nor with text/event-stream)", default=False, switch=True, shown="off")
    max_pending: int = _option(
        ["--max-pending"], "connections a worker keeps waiting for their header or buffered "
        "body; beyond this the oldest is dropped", default=4096, parse=_count, metavar="N",
        limits=(1, 10**6))
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
        default=DEFAULT_MAX_HEADER_SIZE, parse=_size, metavar="BYTES", limits=(1, MAX_SIZE))
    max_body_size: int | None = _option(
        ["--max-body-size"], "largest request body accepted (answered 413 beyond)",
        default=None, parse=_size, metavar="BYTES", shown="unlimited")
    allow_from: tuple[str, ...] = _option(
        ["--allow-from"], "accept TCP connections only from these addresses or CIDR "
        "ranges (e.g. 127.0.0.1 10.0.0.0/8); repeatable; others are closed before a byte "
        "is read", factory=tuple, repeat=True, metavar="NETWORK", shown="any",
        restart="session_affinity")
    socket_owner: str | None = _option(
        ["--socket-owner"], "USER[:GROUP] owning unix socket files", default=None,
        metavar="USER:GROUP", shown="--user and --group when given, else the user who "
        "starts the server", restart=True)
    script_name: str = _option(
        ["--script-name"], "URL prefix the app is mounted under, when the front end does "
        "not send PATH_INFO", default="", metavar="PREFIX")
    log_level: str = _option(
        ["--log-level"], "debug, info, warning, error or critical", default="info",
        parse=_lower, choices=("debug", "info", "warning", "error", "critical"), metavar="LEVEL")
    access_log: str | None = _option(
        ["--access-log"], "write an access log line per request to PATH, or - for stderr",
        default=None, metavar="PATH", restart=True)
    access_log_format: str = _option(
        ["--access-log-format"], "the access log line: text with {named} fields (the "
        "fields are listed in docs/server.md), or combined (nginx's) or json (every field "
        "as a JSON object)", default=DEFAULT_ACCESS_FORMAT, metavar="FORMAT",
        shown=f"`{DEFAULT_ACCESS_FORMAT}`")
    log_format: str = _option(
        ["--log-format"], "the error log on stderr: text, or json (one object per line: "
        "time, level, pid, logger, message and any exception)", default="text",
        parse=_lower, choices=("text", "json"), metavar="FORMAT")
    pid_file: str | None = _option(
        ["--pid"], "write the master's process id to FILE", default=None, metavar="FILE",
        restart=True)
    chdir: str | None = _option(
        ["--chdir"], "change to DIR before loading the app", default=None, metavar="DIR",
        restart=True)
    env: tuple[tuple[str, str], ...] = _option(
        ["--env"], "set an environment variable for the app; repeatable", factory=tuple,
        parse=_env_pair, repeat=True, metavar="KEY=VALUE", shown="none")
    user: str | None = _option(
        ["--user"], "run workers as this user (when started as root)", default=None,
        metavar="USER", restart=True)
    group: str | None = _option(
        ["--group"], "run workers as this group (when started as root)", default=None,
        metavar="GROUP", restart=True)
    http: str | None = _option(
        ["--http"], "development only: also accept HTTP/1.1 on ADDRESS and forward it over "
        "SCGI to this server (needs scgikit[http])", default=None, metavar="ADDRESS", restart=True)
    preload: bool = _option(
        ["--preload"], "load the app once, in the master, before the workers fork: a faster "
        "start, and the app's memory shared by the workers; a HUP (or --max-requests) then "
        "replaces the workers but not the code: restart the server for new code",
        default=False, switch=True, shown="off", restart=True)
    reload: bool = _option(
        ["--reload"], "development only: reload the workers (as on SIGHUP) when a watched "
        "file is created, changed or deleted; every --workers is replaced",
        default=False, switch=True, shown="off", restart=True)
    reload_dir: tuple[str, ...] = _option(
        ["--reload-dir"], "with --reload, watch this folder instead; repeatable",
        factory=tuple, repeat=True, metavar="DIR", shown="the current folder after --chdir, "
        "and the folder of a path/to/file.py TARGET", restart=True)
    reload_include: tuple[str, ...] = _option(
        ["--reload-include"], "with --reload, also watch files whose name matches GLOB (a "
        "GLOB with a / matches the path under the watched folder); repeatable",
        factory=tuple, repeat=True, metavar="GLOB",
        shown="*.py only", restart=True)
    reload_exclude: tuple[str, ...] = _option(
        ["--reload-exclude"], "with --reload, also skip files and folders whose name matches "
        "GLOB (a GLOB with a / matches the path under the watched folder); repeatable; an "
        "exclusion wins over an inclusion",
        factory=tuple, repeat=True, metavar="GLOB", shown="hidden files and folders, "
        "bytecode caches (.pyc files and their folders), virtual environments (a folder "
        "holding pyvenv.cfg)", restart=True)
    stats: str | None = _option(
        ["--stats"], "serve Prometheus metrics at http://ADDRESS/metrics (HOST:PORT or a unix "
        "socket, as --bind), answered by the master", default=None, metavar="ADDRESS", restart=True)
    session_affinity: bool = _option(
        ["--session-affinity"], "send the requests of one session to one worker process, in "
        "the order they came and one at a time, as the scgi package's session_server does: "
        "the master reads each request's head to find its session (--session-pattern on the "
        "cookie, else the client's address) and hands the connection over",
        default=False, switch=True, shown="off", restart=True)
    session_pattern: str = _option(
        ["--session-pattern"], "with --session-affinity, the regular expression searched in "
        "the Cookie header for the session; its group named id is the session",
        default=SESSION_ID_PATTERN, metavar="REGEX", restart=True)
    session_queue: int = _option(
        ["--session-queue"], "with --session-affinity, the requests one session may have "
        "waiting behind the one it runs; beyond, a request is answered 503",
        default=15, parse=_count, metavar="N", limits=(1, 10**6), restart=True)

    def __post_init__(self) -> None:
        try:
            self._check()
        except ConfigError as exc:
            raise self.blame(exc) from None

    def blame(self, error: ConfigError) -> ConfigError:
        """``error`` naming where its option's value came from."""
        return error.blamed(self.sources.get(error.option or ""))

    def _check(self) -> None:
        for f in option_fields():
            _check_value(f, getattr(self, f.name))
        _check_models(self)
        _check_addresses(self)
        _check_access_format(self.access_log_format)
        if self.script_name and (
            not self.script_name.startswith("/") or self.script_name.endswith("/")
        ):
            raise ConfigError(f"{self.script_name!r} must start with '/' and not end with it",
                              "script_name")
        if self.preload and self.reload:
            raise ConfigError("cannot go with --reload: the app is loaded once, in the master, "
                              "so a reload would start workers with the old code", "preload")
        if not self.reload:
            for name in ("reload_dir", "reload_include", "reload_exclude"):
                if getattr(self, name):
                    raise ConfigError("applies only with --reload", name)
        _check_sessions(self)
        _check_recycling(self)
        if self.allow_from:
            from .allow import AllowList, AllowListError  # here: only --allow-from needs it

            try:
                AllowList(self.allow_from)
            except AllowListError as exc:
                raise ConfigError(str(exc), "allow_from") from None
        if self.socket_owner is not None:
            user, sep, group = self.socket_owner.partition(":")
            if not user or (sep and (not group or ":" in group)):
                raise ConfigError(f"{self.socket_owner!r} is not USER or USER:GROUP",
                                  "socket_owner")
        for name, _ in self.env:
            if not name or "=" in name:
                raise ConfigError(f"{name!r} is not a variable name: KEY=VALUE", "env")

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(parse_address(text) for text in self.bind or (DEFAULT_BIND,))

    @property
    def body_limit(self) -> int:
        """--max-body-size as the C loops take it: ``sys.maxsize`` where it is unlimited."""
        return sys.maxsize if self.max_body_size is None else self.max_body_size

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _check_value(f: dataclasses.Field[Any], value: Any) -> None:
    """One option's value alone: its type, its range, its choices, and text that is text."""
    meta = f.metadata
    limits = meta["limits"]
    if limits is not None and value is not None:
        low, high = limits
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{value!r} is not a number", f.name)
        if not math.isfinite(value) or not low <= value <= high:
            show = _mode if meta["parse"] is _octal and isinstance(value, int) else _number
            raise ConfigError(f"{show(value)} is out of range: {show(low)} to {show(high)}",
                              f.name)
    if meta["choices"] and value not in meta["choices"]:
        named = [c for c in meta["choices"] if c]
        raise ConfigError(f"{value!r}: expected {', '.join(named[:-1])} or {named[-1]}", f.name)
    for text in _texts(value):
        if any(not ch.isprintable() for ch in text) or not is_utf8(text):
            raise ConfigError(f"{text!r}: not printable UTF-8 text (a control character, "
                              "a newline or bytes that are not UTF-8)", f.name)


def _mode(value: float) -> str:
    return f"0{int(value):o}" if value > 0 else _number(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else str(value)


def _texts(value: Any) -> list[str]:
    """The strings inside a value (a tuple's items, a --env pair's name and value)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [text for item in value for text in _texts(item)]
    return []


def _check_models(config: Config) -> None:
    """--threads belongs to the threads model: a model chosen by name that would ignore it
    is a mistake, not a setting."""
    if config.threads > 1 and config.worker in ("sync", "asyncio"):
        why = ("runs one request at a time per process" if config.worker == "sync" else
               "serves many requests at once on its event loop")
        raise ConfigError(f"{config.threads} needs --worker threads: the {config.worker} model "
                          f"{why}; drop --threads, or --worker", "threads")
    if config.max_concurrency and config.worker in ("sync", "threads"):
        raise ConfigError(f"applies to the asyncio model, not --worker {config.worker}",
                          "max_concurrency")


def _check_addresses(config: Config) -> None:
    """--bind, --stats and --http each parse, and no two name the same socket."""
    seen: dict[str, str] = {}
    for name, texts in (("bind", config.bind or (DEFAULT_BIND,)), ("stats", _given(config.stats)),
                        ("http", _given(config.http))):
        for text in texts:
            try:
                address = parse_address(text)
            except AddressError as exc:
                raise ConfigError(str(exc), name) from None
            if name == "http" and (address.path is not None or address.fd is not None):
                raise ConfigError(f"{text!r}: the gateway speaks HTTP to a browser, over TCP: "
                                  "give HOST:PORT", name)
            key = str(address)
            if key in seen and not (address.port == 0 and address.path is None):
                also = "given twice" if seen[key] == name else f"also {flag(seen[key])}"
                raise ConfigError(f"{text!r} is {also}: each needs its own socket", name)
            seen[key] = name
    if config.http is not None:
        _check_http()


def _given(value: str | None) -> tuple[str, ...]:
    return () if value is None else (value,)


def _check_recycling(config: Config) -> None:
    """--max-memory is a size no Python process is under; each jitter goes with its limit."""
    if 0 < config.max_memory < MIN_MEMORY:
        raise ConfigError(f"{config.max_memory} bytes: every worker is over that as it starts; "
                          "give a size such as 512m (0: never)", "max_memory")
    if config.max_lifetime_jitter and not config.max_lifetime:
        raise ConfigError("applies only with --max-lifetime", "max_lifetime_jitter")
    if config.max_requests_jitter and not config.max_requests:
        raise ConfigError("applies only with --max-requests", "max_requests_jitter")


def _check_sessions(config: Config) -> None:
    """--session-pattern compiles and names the session."""
    try:
        pattern = re.compile(config.session_pattern)
    except re.error as exc:
        raise ConfigError(f"{config.session_pattern!r}: {exc}", "session_pattern") from None
    if "id" not in pattern.groupindex:
        raise ConfigError(f"{config.session_pattern!r} has no group named id, as in "
                          "session=\"(?P<id>[^\"]+)\"", "session_pattern")


def _check_access_format(text: str) -> None:
    try:
        compile_access_format(text)
    except AccessFormatError as exc:
        raise ConfigError(str(exc), "access_log_format") from None


def _check_http() -> None:
    """``--http``: h11 to speak HTTP with."""
    try:
        import h11  # noqa: F401 - only whether it is there
    except ImportError:
        # Refused here, before anything starts: a server started without the gateway
        # it was asked for looks like it works, until the browser cannot connect.
        raise ConfigError(
            "the development HTTP gateway needs h11, which is not installed: "
            "pip install 'scgikit[http]'", "http"
        ) from None


def option_fields() -> list[dataclasses.Field[Any]]:
    """The options' fields, in the order of the table."""
    return [f for f in dataclasses.fields(Config) if f.metadata]


def flag(name: str) -> str:
    """The long flag of the option whose field is ``name``."""
    for f in option_fields():
        if f.name == name:
            return str(f.metadata["flags"][-1])
    return name


def env_name(name: str) -> str:
    """The environment variable of the option whose field is ``name``."""
    for f in option_fields():
        if f.name == name and f.metadata["env"]:
            return str(f.metadata["env"])
    return "SCGIKIT_" + name.upper()


def file_key(f: dataclasses.Field[Any]) -> str:
    """An option's key in a configuration file: its long flag without the dashes."""
    return str(f.metadata["flags"][-1]).removeprefix("--")
