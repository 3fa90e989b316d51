"""Apps served by a real ``scgikit serve`` subprocess, over TCP and unix sockets.

What the server does with an app's answer and a request's body holds on every worker
model (on asyncio, for the ASGI twin of each app: tests/servers.py).  The rest is PEP
3333's own (the environ, wsgi.input, start_response, write(), close(), file_wrapper):
those tests run on the WSGI models, each marked so.
"""

import hashlib
import json
import os

import pytest
from scgi_raw import exchange_raw, parse_answer, request
from servers import app_source

from scgikit.protocol import encode_request

# Every scenario on each worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")
WSGI_ONLY = pytest.mark.models("sync", "threads", reason="PEP 3333's own API, which the "
                               "asyncio model's ASGI apps do not have")

BIG = 50 * 1024 * 1024


@pytest.fixture
def wsgi(serve, transport):
    """One server with the fixture apps' module; a request helper bound to its address."""

    def start(app, *args):
        return serve(f"wsgi_apps:{app}", "--workers", "2", *args, bind=[transport])

    return start


def test_hello_world_answers_in_cgi_form(wsgi):
    server = wsgi("hello")
    answer = request(server.address, "/")
    assert answer.raw.startswith(b"Status: 200 OK\r\n")
    assert answer.body == b"hello"


@pytest.mark.parametrize("size", [0, 1, 1024, 65535, 65536, 1024 * 1024 + 7])
def test_post_body_reaches_the_app_exactly(wsgi, size):
    server = wsgi("echo_hash")
    body = os.urandom(size)
    answer = request(server.address, "/upload", method="POST", body=body)
    assert json.loads(answer.body) == {
        "size": size, "sha256": hashlib.sha256(body).hexdigest(), "extra": 0}


def test_an_unread_body_is_drained_so_the_answer_arrives(wsgi):
    # The app answers without reading 3 MiB: closing with them unread would reset the
    # connection, and the answer with it.
    server = wsgi("hello")
    answer = request(server.address, "/", method="POST", body=b"u" * (3 * 1024 * 1024))
    assert (answer.status, answer.body) == (200, b"hello")


def test_fifty_megabyte_upload_streams_through(wsgi):
    server = wsgi("echo_hash")
    body = os.urandom(1024) * (BIG // 1024)
    answer = request(server.address, "/upload", method="POST", body=body, timeout=120)
    assert json.loads(answer.body)["sha256"] == hashlib.sha256(body).hexdigest()


def test_fifty_megabyte_streamed_response_arrives_whole(wsgi):
    server = wsgi("stream")
    answer = request(server.address, "/stream?50", timeout=120)
    assert answer.status == 200
    assert len(answer.body) == BIG
    assert answer.body == b"x" * BIG


@WSGI_ONLY
def test_wsgi_input_readline_readlines_and_iteration(wsgi):
    server = wsgi("lines")
    answer = request(server.address, "/", method="POST", body=b"first\nsecond\nthird\nfourth")
    assert json.loads(answer.body) == ["first\n", "sec", ["ond\n", "third\n", "fourth"]]


@WSGI_ONLY
def test_write_callable_comes_before_returned_body(wsgi):
    answer = request(wsgi("with_write").address, "/")
    assert answer.body == b"written then returned"


@WSGI_ONLY
def test_file_wrapper_sends_the_file_from_its_position(wsgi):
    answer = request(wsgi("file_wrapper").address, "/")
    assert answer.body == (b"0123456789" * 100_000)[10:]


def test_empty_response_still_sends_the_head(wsgi):
    answer = request(wsgi("empty").address, "/")
    assert answer.status == 204
    assert answer.body == b""


def test_app_exception_gives_500_without_traceback(wsgi):
    server = wsgi("error")
    answer = request(server.address, "/boom")
    assert answer.status == 500
    assert b"secret" not in answer.raw and b"Traceback" not in answer.raw
    server.wait_for_log(r"App error on GET /boom")
    server.wait_for_log(r"RuntimeError: secret detail")
    assert request(server.address, "/").status == 500  # and the worker still serves


def test_exception_after_head_cuts_the_response_and_is_logged(wsgi):
    server = wsgi("error_after_head")
    answer = request(server.address, "/")
    assert answer.status == 200
    assert answer.body == b"partial"
    server.wait_for_log(r"failed mid-body")


def test_invalid_response_header_gives_500_and_a_log_line(wsgi):
    server = wsgi("bad_header")
    answer = request(server.address, "/")
    assert answer.status == 500
    assert b"Injected" not in answer.raw
    server.wait_for_log(r"invalid header 'X-Bad'")


@WSGI_ONLY
def test_start_response_with_exc_info_replaces_the_status(wsgi):
    answer = request(wsgi("exc_info_replaces").address, "/")
    assert answer.status == 503
    assert answer.body == b"replaced"


@WSGI_ONLY
@pytest.mark.parametrize("fail", ["0", "1"])
def test_close_is_called_on_the_iterable(wsgi, tmp_path, fail):
    mark = tmp_path / "closed"
    request(wsgi("closing").address, f"/?mark={mark}&fail={fail}")
    assert mark.read_text() == "closed"


@WSGI_ONLY
@pytest.mark.parametrize("app", ["validated_hello", "validated_echo", "validated_environ"])
def test_wsgiref_validator_finds_nothing_wrong(wsgi, app):
    server = wsgi(app)
    answer = request(server.address, "/v?x=1", method="POST", body=b"data")
    assert answer.status == 200, server.log
    assert "AssertionError" not in server.log


def test_factory_target_is_called(serve):
    server = serve("wsgi_apps:factory('from factory')")
    assert request(server.address, "/").body == b"from factory"


def test_file_path_target(serve, model, tmp_path):
    app = tmp_path / "myapp.py"
    app.write_text(app_source(model, "b'from file'"))
    server = serve(f"{app}:app", asgi=f"{app}:app")
    assert request(server.address, "/").body == b"from file"


# --- the environ, for what each front end sends -------------------------------------------
# (The ASGI scope's own rules, from the same variables: tests/test_server_asgi.py.)

ENVIRON = pytest.mark.models("sync", "threads", reason="the WSGI environ; the ASGI scope "
                             "is tested in test_server_asgi.py")

def environ_of(server, uri="/", env=None, drop=()):
    """The environ the app saw for a request with these variables (and without ``drop``)."""
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "QUERY_STRING": uri.partition("?")[2],
                 "SERVER_NAME": "front.example", "SERVER_PORT": "8080"}
    variables.update(env or {})
    for name in drop:
        variables.pop(name, None)
    answer = parse_answer(exchange_raw(server.address, encode_request(variables, 0)))
    assert answer.status == 200, answer.raw
    return json.loads(answer.body)


@ENVIRON
def test_nginx_style_path_info_from_request_uri_percent_decoded(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/caf%C3%A9/a%2Fb?q=%20x")
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/café/a/b".encode().decode("latin-1")
    assert environ["QUERY_STRING"] == "q=%20x"


@ENVIRON
def test_apache_style_whole_path_in_script_name_is_normalised(serve):
    server = serve("wsgi_apps:environ_json", "--script-name", "/app")
    environ = environ_of(server, "/app/page?x=1", env={"SCRIPT_NAME": "/app/page"})
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/page")


@ENVIRON
def test_lighttpd_style_script_name_and_path_info_are_kept(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/app/page", env={"SCRIPT_NAME": "/app", "PATH_INFO": "/page"})
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/page")


@ENVIRON
def test_script_name_prefix_is_split_from_the_path(serve):
    server = serve("wsgi_apps:environ_json", "--script-name", "/prefix")
    assert environ_of(server, "/prefix")["PATH_INFO"] == ""
    environ = environ_of(server, "/prefix/x/y")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/prefix", "/x/y")
    assert environ_of(server, "/prefixed")["PATH_INFO"] == "/prefixed"


@ENVIRON
def test_document_uri_is_used_without_request_uri(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/ignored", env={"DOCUMENT_URI": "/doc"}, drop=["REQUEST_URI"])
    assert environ["PATH_INFO"] == "/doc"


@ENVIRON
def test_transfer_encoding_and_http_content_headers_are_dropped(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/", env={
        "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_CONTENT_LENGTH": "5",
        "HTTP_CONTENT_TYPE": "text/x", "HTTP_X_KEPT": "yes"})
    assert "HTTP_TRANSFER_ENCODING" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["CONTENT_TYPE"] == "text/x"
    assert environ["HTTP_X_KEPT"] == "yes"


@ENVIRON
def test_https_sets_the_url_scheme(serve):
    server = serve("wsgi_apps:environ_json")
    assert environ_of(server, "/", env={"HTTPS": "on"})["wsgi.url_scheme"] == "https"
    assert environ_of(server, "/")["wsgi.url_scheme"] == "http"


@ENVIRON
def test_server_name_and_port_come_from_the_front_end_else_the_listener(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("front.example", "8080")
    environ = environ_of(server, "/", drop=["SERVER_NAME", "SERVER_PORT"])
    assert f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}" == server.address


@ENVIRON
def test_missing_method_and_query_get_wsgi_defaults(serve):
    server = serve("wsgi_apps:environ_json")
    environ = environ_of(server, "/", drop=["REQUEST_METHOD", "QUERY_STRING"])
    assert (environ["REQUEST_METHOD"], environ["QUERY_STRING"]) == ("GET", "")


@WSGI_ONLY
def test_read_with_a_size_returns_that_many_bytes_from_a_streamed_body(wsgi):
    body = os.urandom(700_000)
    answer = request(wsgi("validated_echo").address, "/", method="POST", body=body)
    assert answer.body == body


def test_a_bad_header_is_caught_even_after_good_responses(serve):
    server = serve("wsgi_apps:sometimes_bad", "--workers", "1")
    statuses = [request(server.address, path).status for path in ("/ok", "/ok", "/bad", "/ok")]
    assert statuses == [200, 200, 500, 200]
