"""Real frameworks behind real nginx: Flask and Django (sync and threads), Starlette and FastAPI
(asyncio), each at / and under /app, answer through `scgikit serve` exactly as they answer
their own test client.

Each site is nginx running `scgikit config nginx [--prefix /app]` (tests/frontends.py) in front
of `scgikit serve APP` (with `--script-name /app` under the prefix, as that config says, and no
framework setting).  Every request is sent twice: with http.client through nginx, and with the
framework's test client (Flask's ``app.test_client()``, ``django.test.Client``, Starlette's
``TestClient`` for Starlette and FastAPI).  Status, body and every response header must be
the same, except what legitimately differs:

- Date, Server, Connection, Transfer-Encoding: nginx's own;
- Content-Length: nginx may add none to a streamed answer (the test client's, when it has one,
  must come through unchanged);
- the value's surrounding blanks (Django's test client leaves a space in front of Set-Cookie);
- the order of the methods in Allow (Werkzeug lists a set: the order changes with the hash seed
  of each process).

And on the request side, what a test client cannot send: two ``Cookie`` lines go through nginx
as two lines, and to the test client as the one line a browser means by them (``a=1; b=two``).
The test clients answer as a server would: no cookie jar, no redirect followed, an app error
as the framework's 500 page (not raised into the test), and Django's script prefix set from
SCRIPT_NAME as its WSGIHandler does.  The apps live in tests/fixtureapps/frameworks/; every one
has the same routes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from frontends import FrontEnd, available
from servers import ServerProcess

APPS = Path(__file__).parent / "fixtureapps" / "frameworks"
sys.path.insert(0, str(APPS))

HOST = "example.test"  # sent as the Host header; nginx's $host passes it on (without a port)
PREFIX = "/app"
# Django and Flask on both WSGI models; Starlette and FastAPI on asyncio (automatic for ASGI).
MODELS = {"flask": ["sync", "threads"], "django": ["sync", "threads"],
          "starlette": ["asyncio"], "fastapi": ["asyncio"]}
MODEL_ARGS = {"sync": ("--worker", "sync"), "threads": ("--worker", "threads", "--threads", "4"),
              "asyncio": ()}
SITES = [(framework, model, mount) for framework, models in MODELS.items()
         for model in models for mount in ("/", PREFIX)]
# Headers nginx sets itself on every answer, whatever the app said.
FRONT_END_HEADERS = {"date", "server", "connection", "transfer-encoding", "keep-alive"}

UPLOAD = os.urandom(1 << 16) * 80  # 5 MiB
BOUNDARY = "scgikit-frameworks-boundary-7MA4YWxkTrZu0gW"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, values stripped, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> dict:
        return json.loads(self.body)


def _answer(status: int, headers, body: bytes) -> Answer:
    return Answer(status, [(k.lower(), v.strip()) for k, v in headers], body)


@dataclass
class Request:
    """One request as the client sees it: ``path`` is relative to where the app is mounted."""

    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None
    cookies: list[str] = field(default_factory=list)  # one Cookie line each
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False  # the body sent chunked to nginx (a test client sends its length)


# --- the framework's own test client ------------------------------------------------------------

def _flask(request: Request, prefix: str) -> Answer:
    import flask_app

    client = flask_app.app.test_client(use_cookies=False)
    headers = [("Host", HOST), *request.headers]
    if request.cookies:
        headers.append(("Cookie", "; ".join(request.cookies)))
    response = client.open(request.path, method=request.method, headers=headers,
                           base_url=f"http://{HOST}{prefix}", data=request.body or None,
                           content_type=request.content_type)
    return _answer(response.status_code, response.headers.to_wsgi_list(), response.get_data())


def _django(request: Request, prefix: str) -> Answer:
    import django_app  # noqa: F401  (configures Django)
    from django.test import Client
    from django.test.utils import override_script_prefix

    headers = {"Host": HOST, **dict(request.headers)}
    if request.cookies:
        headers["Cookie"] = "; ".join(request.cookies)
    extra = {"content_type": request.content_type} if request.content_type else {}
    # Django's WSGIHandler sets the script prefix from SCRIPT_NAME; its test client does not
    # (Django's own tests use override_script_prefix), so it is done here as the handler would.
    client = Client(raise_request_exception=False)  # an app error is its 500 page
    with override_script_prefix(prefix + "/"):
        response = client.generic(request.method, request.path, data=request.body,
                                  headers=headers, SCRIPT_NAME=prefix, **extra)
    # As WSGIHandler sends them: the headers, then one Set-Cookie per cookie.
    headers = [*response.items(),
               *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
    return _answer(response.status_code, headers, response.getvalue())


def _asgi(module: str):
    def call(request: Request, prefix: str) -> Answer:
        from starlette.testclient import TestClient

        app = __import__(module).app
        headers = [("Host", HOST), *request.headers]
        if request.content_type:
            headers.append(("Content-Type", request.content_type))
        if request.cookies:
            headers.append(("Cookie", "; ".join(request.cookies)))
        with TestClient(app, base_url=f"http://{HOST}", root_path=prefix,
                        follow_redirects=False, raise_server_exceptions=False) as client:
            response = client.request(request.method, prefix + request.path, headers=headers,
                                      content=request.body or None)
        return _answer(response.status_code, response.headers.multi_items(), response.content)
    return call


TEST_CLIENTS = {"flask": _flask, "django": _django, "starlette": _asgi("starlette_app"),
                "fastapi": _asgi("fastapi_app")}


# --- the same app behind nginx -------------------------------------------------------------------

@dataclass
class Site:
    framework: str
    model: str
    prefix: str  # "" at the root
    front: FrontEnd
    backend: ServerProcess

    def fetch(self, request: Request) -> Answer:
        """``request`` through nginx, with http.client."""
        conn = http.client.HTTPConnection("127.0.0.1", self.front.port, timeout=60)
        try:
            conn.putrequest(request.method, self.prefix + request.path, skip_host=True,
                            skip_accept_encoding=True)
            conn.putheader("Host", HOST)
            if request.content_type:
                conn.putheader("Content-Type", request.content_type)
            for line in request.cookies:
                conn.putheader("Cookie", line)
            for name, value in request.headers:
                conn.putheader(name, value)
            if request.chunked:
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                middle = len(request.body) // 2
                for piece in (request.body[:middle], request.body[middle:]):
                    conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            else:
                if request.body or request.method == "POST":
                    conn.putheader("Content-Length", str(len(request.body)))
                conn.endheaders(request.body or None)
            response = conn.getresponse()
            return _answer(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    def reference(self, request: Request) -> Answer:
        """``request`` through the framework's own test client."""
        return TEST_CLIENTS[self.framework](request, self.prefix)

    def check(self, request: Request) -> Answer:
        """Send ``request`` both ways; they must agree. Returns the answer through nginx."""
        served, expected = self.fetch(request), self.reference(request)
        where = f"{request.method} {self.prefix}{request.path} on {self.framework}/{self.model}"
        assert served.status == expected.status, (where, served, expected)
        assert served.body == expected.body, (where, served.body[:500], expected.body[:500])
        assert _comparable(served.headers) == _comparable(expected.headers), (
            where, served.headers, expected.headers)
        length = expected.header("content-length")
        if length is not None:  # nginx keeps the app's Content-Length
            assert served.header("content-length") == length, (where, served.headers)
        if served.header("content-length") is not None and request.method != "HEAD":
            assert int(served.header("content-length")) == len(served.body)
        return served


def _comparable(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The app's headers: by name, values in order, without nginx's own and Content-Length."""
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        if name == "allow":
            value = ", ".join(sorted(method.strip() for method in value.split(",")))
        if name not in FRONT_END_HEADERS and name != "content-length":
            by_name.setdefault(name, []).append(value)
    return by_name


def _site_id(site: tuple[str, str, str]) -> str:
    framework, model, mount = site
    return f"{framework}-{model}-{'root' if mount == '/' else mount.strip('/')}"


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """The file each app's /download route sends (its path in FRAMEWORKS_DOWNLOAD, for the
    servers and for the test clients in this process)."""
    path = tmp_path_factory.mktemp("download") / "download.bin"
    path.write_bytes(os.urandom(3 << 20))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAMEWORKS_DOWNLOAD", str(path))
        yield path.read_bytes()


@pytest.fixture(scope="module", params=SITES, ids=[_site_id(s) for s in SITES])
def site(request, download, tmp_path_factory):
    framework, model, mount = request.param
    reason = available("nginx")
    if reason:
        pytest.skip(reason)
    pytest.importorskip(framework, reason=f"{framework} is a test dependency: "
                        "pip install -e '.[test]' (scripts/install-test-deps)")
    if framework in ("starlette", "fastapi"):
        try:
            import starlette.testclient  # noqa: F401  (needs httpx2, or httpx)
        except RuntimeError as exc:
            pytest.skip(f"Starlette's TestClient cannot load: {exc}")
    args = [*MODEL_ARGS[model], "--workers", "2"]
    if mount != "/":
        args += ["--script-name", mount]  # what `scgikit config nginx --prefix` tells to add
    target = f"{APPS / f'{framework}_app.py'}:app"
    backend = ServerProcess.scgikit(target, *args).start()
    front = None
    try:
        folder = tmp_path_factory.mktemp(f"nginx-{framework}")
        front = FrontEnd("nginx", folder, [backend.address], prefix=mount).start()
        yield Site(framework, model, "" if mount == "/" else mount, front, backend)
    finally:
        if front is not None:
            front.stop()
        backend.stop()


# --- the behaviours ------------------------------------------------------------------------------

def test_routes_and_404_answer_as_the_test_client(site):
    assert site.check(Request("GET", "/")).status == 200
    hello = site.check(Request("GET", "/hello/world")).json()
    assert hello["hello"] == "world"
    encoded = site.check(Request("GET", "/hello/caf%C3%A9%20cr%C3%A8me")).json()
    assert encoded["hello"] == "café crème"
    assert site.check(Request("GET", "/no/such/route")).status == 404
    assert site.check(Request("GET", "/form")).status == 405  # a route for POST only
    # a route that ignores a 5 MiB upload: the answer still comes through nginx
    assert site.check(Request("POST", "/hello/world", UPLOAD, "application/octet-stream")
                      ).status == 405
    # HEAD: 200 where the framework adds it to GET routes (Flask, Starlette), else 405
    assert site.check(Request("HEAD", "/hello/world")).body == b""


def test_each_site_runs_on_its_worker_model(site):
    if site.model == "asyncio":
        # the asyncio worker ran the app's lifespan startup; its state reaches each request
        answer = site.check(Request("GET", "/state"))
        assert answer.json() == {"started": "by the lifespan startup"}
        return
    answer = site.fetch(Request("GET", "/server"))
    assert answer.status == 200, answer
    assert answer.json() == {"multithread": site.model == "threads", "multiprocess": True}


def test_query_string_reaches_the_app_decoded(site):
    answer = site.check(Request("GET", "/query?a=1&a=2&b=caf%C3%A9+au+lait&n=3")).json()
    assert answer["a"] == ["1", "2"]
    assert answer["b"] == ["café au lait"]


def test_urlencoded_form_post_is_parsed(site):
    answer = site.check(Request("POST", "/form", b"name=Ada+Lovelace&tag=x&tag=y%26z",
                                "application/x-www-form-urlencoded")).json()
    assert answer["name"] == ["Ada Lovelace"]
    assert answer["tag"] == ["x", "y&z"]


def test_json_body_is_parsed(site):
    data = {"name": "numbers \N{CHECK MARK}", "values": [1, 2, 3, 4]}
    for chunked in (False, True):  # nginx turns a chunked body into one with a length
        answer = site.check(Request("POST", "/json", json.dumps(data).encode(),
                                    "application/json", chunked=chunked)).json()
        assert answer == {"received": data, "total": 10}


def test_multipart_upload_of_5_mib_arrives_intact(site):
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
            f"five mebibytes\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"data.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + UPLOAD + f"\r\n--{BOUNDARY}--\r\n".encode()
    answer = site.check(Request("POST", "/upload", body,
                                f"multipart/form-data; boundary={BOUNDARY}")).json()
    assert answer == {"note": "five mebibytes", "filename": "data.bin",
                      "content_type": "application/octet-stream", "size": 5 << 20,
                      "sha256": hashlib.sha256(UPLOAD).hexdigest()}


def test_two_cookie_lines_reach_the_app_as_both_cookies(site):
    answer = site.check(Request("GET", "/cookies", cookies=["a=1", "b=two"]))
    assert answer.json()["cookies"] == {"a": "1", "b": "two"}
    set_cookies = answer.all("set-cookie")
    assert len(set_cookies) == 2, answer.headers
    assert any(c.startswith("visited=yes") for c in set_cookies)
    assert any(c.startswith("theme=dark") and f"path={site.prefix or '/'}" in c.lower()
               for c in set_cookies), set_cookies


def test_redirect_location_has_the_request_host_and_prefix(site):
    relative = site.check(Request("GET", "/redirect"))
    assert relative.status in (302, 307), relative
    location = urlsplit(relative.header("location"))
    assert location.path == f"{site.prefix}/hello/redirected"
    assert location.netloc in ("", HOST)

    absolute = site.check(Request("GET", "/redirect/absolute"))
    assert absolute.status == 302, absolute
    assert absolute.header("location") == (
        f"http://{HOST}{site.prefix}/hello/redirected?from=absolute")

    # the framework's own redirect to the route's canonical URL (its trailing slash)
    slash = site.check(Request("GET", "/items?page=2"))
    if slash.status != 404:  # Django adds the slash only with CommonMiddleware
        assert urlsplit(slash.header("location"))[2:4] == (f"{site.prefix}/items/", "page=2")

    # and the Location leads back to the app through nginx
    followed = site.fetch(Request("GET", location.path.removeprefix(site.prefix)))
    assert (followed.status, followed.json()["hello"]) == (200, "redirected")


def test_streamed_response_arrives_whole(site):
    answer = site.check(Request("GET", "/stream"))
    expected = "".join(f"chunk {n}: {'x' * 1000 * n}\n" for n in range(5)).encode()
    assert answer.body == expected
    assert answer.header("content-type").startswith("text/plain")


def test_urls_built_by_the_framework_carry_the_mount_prefix(site):
    answer = site.check(Request("GET", "/hello/world")).json()
    assert answer["path"] == f"{site.prefix}/hello/world"
    assert answer["root_path"] == site.prefix
    assert answer["url"] == f"{site.prefix}/hello/world"
    assert answer["external_url"] == f"http://{HOST}{site.prefix}/hello/world"


def test_concurrent_requests_each_get_their_own_answer(site):
    # 16 at a time: on 2 workers, each running 4 threads or an event loop on those models
    def one(number: int) -> tuple[str, str]:
        answer = site.fetch(Request("GET", f"/hello/n{number}"))
        assert answer.status == 200, answer
        return answer.json()["hello"], answer.json()["url"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(64)))
    assert answers == [(f"n{i}", f"{site.prefix}/hello/n{i}") for i in range(64)]


def test_file_response_is_sent_whole_and_by_range(site, download):
    # WSGI apps hand the file to wsgi.file_wrapper, Starlette's FileResponse to
    # http.response.pathsend: scgikit sends both with sendfile; the test clients read the file.
    whole = site.check(Request("GET", "/download"))
    assert (whole.status, whole.body) == (200, download)
    part = site.check(Request("GET", "/download", headers=[("Range", "bytes=1000-1999")]))
    if site.framework == "django":  # Django's FileResponse ignores Range
        assert (part.status, part.body) == (200, download)
    else:
        assert (part.status, part.body) == (206, download[1000:2000])


def test_app_error_gives_the_framework_s_own_500_page(site):
    answer = site.check(Request("GET", "/error"))
    assert answer.status == 500
    assert b"an app error" not in answer.body


def test_cookie_value_with_a_comma_reaches_the_app_unchanged(site):
    # RFC 6265 excludes commas from cookie values, but browsers send what JavaScript set
    # (document.cookie = "list=a, b").  What a framework makes of it is its own business
    # (Werkzeug versions differ); check() proves the app sees what its test client does,
    # where rewriting ", " to "; " used to split the cookie in two.
    answer = site.check(Request("GET", "/cookies", cookies=["list=a, b; c=3"]))
    assert answer.json()["cookies"]["c"] == "3"
