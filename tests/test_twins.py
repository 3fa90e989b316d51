"""The ASGI twins (tests/servers.py: ASGI_TWINS) answer as their WSGI apps do, on the wire.

A server-behaviour test serves the twin of its app on the asyncio model and asserts the
same things there: that holds only if each twin gives the same status, headers and body
bytes, and reads the request body as its WSGI app does.  One sync server and one asyncio
server each serve every app through a router (the app named by an ``X-App`` header), and
the raw answers to the same requests are compared.
"""

from __future__ import annotations

import asyncio
import importlib
import os

import pytest
from scgi_raw import exchange_raw, parse_answer
from servers import ASGI_TWINS, ServerProcess

from scgikit.protocol import encode_request

pytestmark = pytest.mark.one_path(reason="it compares apps' answers on the wire; the paths are "
                                         "compared where they meet (test_speedups.py)")

ROUTER = '''
import importlib

import asgi_apps

def _load(target):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)

def wsgi(environ, start_response):
    name = environ["HTTP_X_APP"]
    app = _load(name) if name != "wsgi_apps:factory" else _load(name)("from factory")
    return app(environ, start_response)

async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    name = TWINS[dict(scope["headers"])[b"x-app"].decode()]
    app = _load(name) if name != "asgi_apps:factory" else _load(name)("from factory")
    await app(scope, receive, send)
'''

# (app, URI, body): each sent to both servers.  Twins with effects beyond their answer
# (leak_descriptors, and the factories that crash, wait or fail as they load) are only
# checked to exist, below.
CASES = [
    ("wsgi_apps:hello", "/", b""),
    ("wsgi_apps:slow", "/?0", b""),
    ("wsgi_apps:env_var", "/", b""),
    ("wsgi_apps:heap", "/", b""),
    ("wsgi_apps:echo_hash", "/", b""),
    ("wsgi_apps:echo_hash", "/", b"e" * 300_000),  # beyond --body-buffer-size: streamed
    ("wsgi_apps:stream", "/?2", b""),
    ("wsgi_apps:big_file", "/", b""),
    ("wsgi_apps:empty", "/", b""),
    ("wsgi_apps:error", "/", b""),
    ("wsgi_apps:error_after_head", "/", b""),
    ("wsgi_apps:bad_header", "/", b""),
    ("wsgi_apps:sometimes_bad", "/ok", b""),
    ("wsgi_apps:sometimes_bad", "/bad", b""),
    ("wsgi_apps:exc_info_replaces", "/", b"x"),
    ("wsgi_apps:closing", "/?mark={mark}", b""),
    ("wsgi_apps:closing", "/?mark={mark}&fail=1", b""),
    ("wsgi_apps:factory", "/", b""),
    ("wsgi_apps:answer_kinds", "/?generator", b""),
    ("wsgi_apps:answer_kinds", "/?write", b""),
    ("wsgi_apps:answer_kinds", "/?list", b""),
    ("wsgi_apps:answer_kinds", "/?sized", b""),
    ("wsgi_apps:answer_kinds", "/?events", b""),
    ("wsgi_apps:answer_kinds", "/?own", b""),
    ("wsgi_apps:answer_kinds", "/?own_no", b""),
    ("wsgi_apps:answer_kinds", "/?file", b""),
    ("unread_apps:app", "/ok", b"u" * 5000),
    ("unread_apps:app", "/redirect", b"u" * 5000),
    ("unread_apps:app", "/unauthorized", b""),
    ("unread_apps:app", "/missing", b"u"),
    ("unread_apps:app", "/partial", b"p" * 300_000),
    ("unread_apps:app", "/read", b"r" * 300_000),
    ("systemd_apps:environ_report", "/", b""),
    ("recycling_apps:app", "/grow?1", b""),
    ("recycling_apps:app", "/", b""),
]


# Targets that are factories (called as ``target(...)``), of a WSGI app and its twin.
FACTORIES = {"wsgi_apps:factory", "boot_apps:crash_soon_after_ready", "systemd_apps:gated",
             "systemd_apps:breakable", "recycling_apps:gated"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twins")
    (folder / "router.py").write_text(f"TWINS = {ASGI_TWINS!r}\n{ROUTER}")
    started = [ServerProcess.scgikit(f"{folder / 'router.py'}:{kind}", "--workers", "1",
                                     "--worker", model).start()
               for kind, model in (("wsgi", "sync"), ("asgi", "asyncio"))]
    yield started
    for server in started:
        server.stop()


def answers(servers, target, uri, body):
    path, _, query = uri.partition("?")
    variables = {"REQUEST_METHOD": "POST", "REQUEST_URI": uri, "QUERY_STRING": query,
                 "HTTP_X_APP": target, "SERVER_NAME": "test", "SERVER_PORT": "80"}
    data = encode_request(variables, len(body)) + body
    return [exchange_raw(server.address, data, timeout=60) for server in servers]


@pytest.mark.parametrize(("target", "uri", "body"), CASES,
                         ids=[f"{t.partition(':')[2]}{u.partition('?')[0]}-{len(b)}"
                              for t, u, b in CASES])
def test_a_twin_answers_as_its_wsgi_app(servers, target, uri, body, tmp_path):
    uri = uri.format(mark=tmp_path / "closed")
    wsgi, asgi = answers(servers, target, uri, body)
    assert parse_answer(wsgi).raw  # a whole answer, compared whole:
    assert asgi == wsgi


def test_the_pid_twin_answers_the_pid_of_its_worker(servers):
    wsgi, asgi = answers(servers, "wsgi_apps:pid", "/", b"")
    for server, raw in zip(servers, (wsgi, asgi)):
        head, _, pid = raw.partition(b"\r\n\r\n")
        assert head == b"Status: 200 OK\r\nContent-Type: text/plain"
        assert os.path.exists(f"/proc/{int(pid)}") and int(pid) != server.pid


@pytest.mark.parametrize("uri", ["/200?5", "/404?3"])
def test_the_stats_twin_differs_only_by_the_reason_phrase(servers, uri):
    # ASGI sends a status code: the server says the standard phrase, not the app's own.
    wsgi, asgi = answers(servers, "stats_apps:app", uri, b"body")
    code = uri[1:4].encode()
    assert wsgi.startswith(b"Status: " + code + b" Chosen\r\n")
    standard = {b"200": b"OK", b"404": b"Not Found"}[code]
    assert asgi == wsgi.replace(b" Chosen\r\n", b" " + standard + b"\r\n", 1)


@pytest.mark.parametrize("target", sorted(ASGI_TWINS))
def test_every_twin_is_an_asgi_app_next_to_its_wsgi_app(target):
    def load(name):
        module, _, attribute = name.partition(":")
        return getattr(importlib.import_module(module), attribute)

    wsgi, asgi = load(target), load(ASGI_TWINS[target])
    assert not asyncio.iscoroutinefunction(wsgi)
    if target in FACTORIES:
        assert not asyncio.iscoroutinefunction(asgi)  # a factory, of an ASGI app
        return
    assert asyncio.iscoroutinefunction(asgi)
