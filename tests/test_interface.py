"""``--interface auto|wsgi|asgi|handler``: the kind of app TARGET names, told by the app or
named by the operator, never guessed wrong in silence; and ``scgikit check`` says what
``scgikit serve`` does with it."""

from __future__ import annotations

import re
import subprocess
import sys

import classic_handlers
import handler_factories
import pytest
from scgi_raw import request
from servers import ServerProcess, child_env

from scgikit.apps.loader import AppImportError, app_kind, make_handler

pytestmark = pytest.mark.timeout(90)


def scgikit(*args, cwd=None, **env):
    return subprocess.run([sys.executable, "-m", "scgikit", *args], capture_output=True,
                          text=True, timeout=60, env=child_env(**env), cwd=cwd)


# --- what app_kind makes of an app ----------------------------------------------------------

async def asgi_app(scope, receive, send):
    pass


def wsgi_app(environ, start_response):
    return []


@pytest.mark.parametrize("app, interface, kind", [
    (classic_handlers.Echo, "auto", "handler"),
    (classic_handlers.Echo, "handler", "handler"),
    (handler_factories.marked, "auto", "handler"),
    (handler_factories.marked, "handler", "handler"),
    (handler_factories.create_handler, "handler", "handler"),
    (wsgi_app, "wsgi", "wsgi"),
    (asgi_app, "auto", "asgi"),
    (asgi_app, "asgi", "asgi"),
    (handler_factories.Greeter, "handler", "handler"),
])
def test_app_kind_tells_or_takes_the_kind(app, interface, kind):
    assert app_kind(app, interface) == kind


@pytest.mark.parametrize("app, interface, message", [
    (classic_handlers.Echo, "wsgi", "is a classic handler, not a WSGI app; serve it with "
                                    "--interface handler"),
    (handler_factories.marked, "asgi", "is a classic handler, not an ASGI app"),
    (asgi_app, "handler", "is an ASGI app (an async callable), not a classic handler; serve it "
                          "with --interface asgi"),
    (asgi_app, "wsgi", "is an ASGI app (an async callable), not a WSGI app"),
    (42, "handler", "--interface handler: 42 is not callable; a classic handler is an "
                    "SCGIHandler subclass or a function that takes parent_fd and returns a "
                    "handler"),
    (42, "wsgi", "--interface wsgi: 42 is not callable; a WSGI app is a callable"),
    (int, "auto", "a class whose instances are classic handlers: --interface handler"),
    # A function of one argument is no WSGI app: the handler factory met in practice.
    (handler_factories.create_handler, "auto",
     "handler_factories.create_handler cannot be called as a WSGI app, with (environ, "
     "start_response); a function that takes parent_fd and returns a handler is served with "
     "--interface handler, or marked @handler_factory"),
    (handler_factories.create_handler, "wsgi", "--interface wsgi: handler_factories."
                                               "create_handler cannot be called as a WSGI app"),
])
def test_an_interface_the_app_contradicts_is_refused_with_what_it_is(app, interface, message):
    with pytest.raises(AppImportError, match=re.escape(message)):
        app_kind(app, interface)


def test_a_handler_is_made_with_parent_fd_none_and_must_answer_requests():
    handler = make_handler(handler_factories.create_handler)
    assert isinstance(handler, handler_factories.Greeter) and handler.parent_fd is None
    with pytest.raises(AppImportError, match=r"\(None\) returned 42, which has neither "
                                             r"produce\(\) nor handle_connection\(\)"):
        make_handler(lambda parent_fd: 42)


# --- the option -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize("how", ["flag", "environment", "file"])
def test_a_wrong_interface_value_is_one_line_and_status_2(command, how, tmp_path):
    args, env = ["handler_factories:marked"], {}
    if how == "flag":
        args += ["--interface", "cgi"]
    elif how == "environment":
        env["SCGIKIT_INTERFACE"] = "cgi"
    else:
        (tmp_path / "scgikit.toml").write_text('interface = "cgi"\n')
        args += ["-c", str(tmp_path / "scgikit.toml")]
    result = scgikit(command, *args, **env)
    assert result.returncode == 2
    where = {"flag": "--interface: ", "environment": "SCGIKIT_INTERFACE: ",
             "file": f"{tmp_path}/scgikit.toml: key 'interface': "}[how]
    said = "scgikit check: error: " if command == "check" else "scgikit serve: "
    assert result.stderr == (f"{said}{where}'cgi': expected auto, wsgi, asgi or "
                             "handler\n")
    assert result.stdout == ""


def test_serve_help_and_the_options_page_list_interface():
    assert "--interface KIND" in scgikit("serve", "--help").stdout
    from scgikit.options import options_page

    assert ("| `--interface KIND` | `SCGIKIT_INTERFACE` | `interface`: string | re-read; "
            "restart with `--preload` | auto |") in options_page()


# --- check agrees with serve ----------------------------------------------------------------

CASES = [
    # (target and options, what check reports or refuses in the words serve logs, and the
    # status of serve's answer to a request when it serves)
    (["handler_factories:marked"], "app: handler_factories:marked (a classic handler factory)",
     200),
    (["handler_factories:create_handler", "--interface", "handler"],
     "app: handler_factories:create_handler (a classic handler factory, --interface handler)",
     200),
    # Unmarked, a function of one argument is refused: served as WSGI, it would fail.
    (["handler_factories:create_handler"], "cannot be called as a WSGI app", None),
    (["classic_handlers:Echo", "--interface", "handler"],
     "app: classic_handlers:Echo (a classic SCGIHandler, --interface handler)", 200),
    (["wsgi_apps:hello", "--interface", "wsgi"],
     "app: wsgi_apps:hello (a WSGI app, --interface wsgi)", 200),
    (["handler_factories:not_callable", "--interface", "handler"],
     "--interface handler: 42 is not callable", None),
    (["handler_factories:returns_nothing"],
     "returned None, which has neither produce() nor handle_connection()", None),
    (["classic_handlers:Echo", "--interface", "wsgi"], "is a classic handler, not a WSGI app",
     None),
    (["asgi_apps:hello", "--interface", "handler"],
     "is an ASGI app (an async callable), not a classic handler", None),
    (["handler_factories:marked", "--worker", "threads"], "runs on the sync model only", None),
]


@pytest.mark.parametrize("args, said, status", CASES, ids=[" ".join(case[0]) for case in CASES])
def test_check_says_what_serve_does(args, said, status):
    checked = scgikit("check", *args, "--bind", "127.0.0.1:0", "--workers", "1")
    server = ServerProcess.scgikit(*args, "--workers", "1").start()
    try:
        if status is None:  # serve refuses the app: check refuses it in the same words
            (refused,) = server.wait_for_log(r"Cannot load the app: (.*)", timeout=30)
            assert said in refused[1]
            assert server.proc.wait(30) == 4
            assert checked.returncode == 4, checked.stdout
            assert checked.stderr == f"scgikit check: error: cannot load the app: {refused[1]}\n"
        else:  # serve answers: check reported what it serves
            assert checked.returncode == 0, checked.stderr
            assert f"{said}\n" in checked.stdout
            assert request(server.address, "/k").status == status
    finally:
        server.stop()
