"""A real program written for the ``scgi`` 2.2 package runs on scgikit after one changed import.

The program is Quixote 3.8's SCGI server script, ``quixote/server/scgi_server.py``
(tests/quixote_servers.py): its handler factory, its ``main()`` command line, with and
without ``--session-affinity``.  It is run twice, each time as its users run it: as
installed, on the original ``scgi`` 2.2 ("the original"), and as a copy whose import line
alone reads ``from scgikit import scgi_server, session_server``.  Both serve Quixote's
demo (``quixote.demo.create_publisher``), over TCP and over a unix socket inherited as
from systemd, and every page of the demo, a filled-in form posted, is fetched from each
directly over SCGI and through real nginx: the answers must be equal byte for byte, but
for what ``quixote_servers.comparable`` masks, each mask with its reason: the clock, the
address of an object in each process, Quixote's file cache in the worker that answers
(on one page), and behind nginx the client's port and each nginx's own port and folder.
A control test holds two runs of the original to the same comparison.

With ``--session-affinity``, besides, a session's requests (Quixote's session cookie) are
all served by one worker, and a session that hammers a slow page does not hold up another
session.  Last, Quixote's own WSGI adapter (``quixote.wsgi.QWIP``) around the same demo,
under ``scgikit serve``, answers the same pages as the original, but for what the WSGI
path rightly answers otherwise (``wsgi_masks``).
"""

from __future__ import annotations

import difflib
import re
import threading

import pytest

pytest.importorskip("quixote", reason="Quixote 3.8 is a test dependency: pip install -e "
                    "'.[test]' (scripts/install-test-deps)")
pytest.importorskip("scgi.session_server", reason="the original scgi 2.2 package: "
                    "scripts/install-test-deps installs it")

from frontends import FrontEnd, available  # noqa: E402
from quixote_apps import SLOW_SECONDS  # noqa: E402  (tests/fixtureapps, on sys.path)
from quixote_servers import (  # noqa: E402
    BODY_MASKS,
    NGINX_BODY_MASKS,
    NGINX_PARAMS,
    ORIGINAL_IMPORT,
    SCGIKIT_IMPORT,
    QuixoteServer,
    Request,
    comparable,
    demo_pages,
    form_post,
    http_exchange,
    quixote_script,
    read_all,
    scgi_exchange,
    scgi_send,
    split,
    status,
)
from servers import ServerProcess, wait_until, worker_pids  # noqa: E402

# The script's options as its users give them.  --max-children is left out of the plain
# server's: Quixote's main() declares it type="string" and the original compares it with
# an int (len(children) < "2"), a TypeError that kills the master at its first request
# (test_the_original_server_dies_of_quixotes_max_children_option).  The session server of
# the original never reads it, so it takes it as given.
PLAIN: tuple[str, ...] = ()
FACTORY = ("--factory", "quixote_apps.create_publisher")  # tests/fixtureapps/quixote_apps.py
SESSIONS = ("--max-children", "2", "--session-affinity")

SESSION_IMPLEMENTATIONS = ["scgi", "scgikit"]

# What some pages of the demo answer, to know the pages compared are the demo's own (and
# not, say, its index for every path, as when PATH_INFO does not reach it).
EXPECTED = {"/simple": (200, b"<html><body>Hello!</body></html>"),
            "/error": (500, b"ValueError: this is a Python exception"),
            "/publish_error": (400, b"Publishing error raised by publish_error"),
            "/extras": (302, b"redirected you to http://"),
            "/extras/12/factorial": (200, b"12! = 479001600"),
            "/nosuch": (404, b"has no component 'nosuch'"),
            "/extras/form": (200, b'name="password"')}


@pytest.fixture(scope="module", params=["tcp", "unix"])
def family(request):
    """Each server is run over TCP (--host, --port) and over a unix socket (inherited)."""
    return request.param


class Sites:
    """The servers of this module, each started on first use and stopped at the end; a start
    that failed fails again at once for the next test that asks for it."""

    def __init__(self, folders: pytest.TempPathFactory) -> None:
        self.folders = folders
        self.started: dict[tuple, object] = {}
        self.stops: list = []

    def _once(self, key: tuple, start):
        if key not in self.started:
            try:
                self.started[key] = start()
            except BaseException as exc:
                self.started[key] = exc
        result = self.started[key]
        if isinstance(result, BaseException):
            raise result
        return result

    def quixote(self, implementation: str, family: str, *args: str,
                twin: bool = False) -> QuixoteServer:
        """Quixote's scgi_server.py (``implementation``: "scgi", as installed; "scgikit", the
        copy) with ``args``; ``twin``: a second one of the same."""
        def start() -> QuixoteServer:
            folder = self.folders.mktemp(f"quixote-{implementation}-{family}")
            server = QuixoteServer(quixote_script(implementation, folder), list(args), family,
                                   folder)
            self.stops.append(server.stop)
            return server.start()
        return self._once(("quixote", implementation, family, args, twin), start)

    def nginx(self, server: QuixoteServer | ServerProcess) -> FrontEnd:
        """nginx as ``scgikit config nginx`` has it, with the variables Quixote needs."""
        reason = available("nginx")
        if reason:
            pytest.skip(reason)

        def start() -> FrontEnd:
            front = FrontEnd("nginx", self.folders.mktemp("nginx"), [server.address],
                             scgi_params=NGINX_PARAMS)
            self.stops.append(front.stop)
            return front.start()
        return self._once(("nginx", server.address), start)

    def wsgi(self, family: str) -> ServerProcess:
        """``scgikit serve`` of Quixote's WSGI adapter around the demo (sync: the adapter
        refuses a multithreaded server, the demo's publisher not being thread-safe)."""
        def start() -> ServerProcess:
            folder = self.folders.mktemp(f"wsgi-{family}")
            bind = "127.0.0.1:0" if family == "tcp" else f"unix:{folder}/wsgi.sock"
            server = ServerProcess.scgikit("quixote_wsgi", "--workers", "2",
                                           "--worker", "sync", bind=[bind])
            self.stops.append(server.stop)
            return server.start()
        return self._once(("wsgi", family), start)

    def close(self) -> None:
        """Stop every server, the front ends first; then report the first that would not."""
        errors = []
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    sites = Sites(tmp_path_factory)
    yield sites
    sites.close()


def scgi(server):
    return lambda request: scgi_exchange(server.address, request)


def http(front: FrontEnd):
    return lambda request: http_exchange(front.port, request)


def mismatches(pages: list[Request], expected, served, masks) -> list[str]:
    """For each page whose two answers differ (once masked), where they differ."""
    found = []
    for page in pages:
        want = comparable(expected(page), masks, page.uri)
        got = comparable(served(page), masks, page.uri)
        if want != got:
            diff = difflib.unified_diff(want.decode("latin-1").splitlines(),
                                        got.decode("latin-1").splitlines(),
                                        "original", "served", lineterm="", n=1)
            found.append(f"{page}:\n" + "\n".join(list(diff)[:24]))
    return found


def assert_same(pages: list[Request], expected, served, masks) -> None:
    report = mismatches(pages, expected, served, masks)
    assert not report, f"{len(report)} of {len(pages)} pages differ:\n\n" + "\n\n".join(report)


def check_the_pages_are_the_demos(pages: list[Request], fetch) -> None:
    uris = {page.uri for page in pages}
    assert {"/", "/extras/", "/extras/src/", "/extras/chunked", "/favicon.ico", "/dynamic/",
            "/extras/12/prev", "/extras/bundle_data/errors.py"} <= uris, uris
    assert any(re.fullmatch(r"/extras/bundle_data/\w+/errors.py,session.py", u) for u in uris)
    for uri, (code, text) in EXPECTED.items():
        raw = fetch(Request("GET", uri))
        assert status(raw) == code and text in split(raw)[1], (uri, raw[:600])
    posted = fetch(form_post())
    assert status(posted) == 200 and b"Dulcinea del Toboso" in posted, posted[:600]
    assert b"&lt;Upload at " in posted and b"(880 bytes 880)" in posted, posted[:600]


def test_the_copy_differs_from_quixotes_script_by_its_import_line_alone(tmp_path):
    original = quixote_script("scgi", tmp_path)
    copy = quixote_script("scgikit", tmp_path)
    changed = [line for line in difflib.ndiff(original.read_text().splitlines(True),
                                              copy.read_text().splitlines(True))
               if line[:1] in "+-"]
    assert changed == [f"- {ORIGINAL_IMPORT}", f"+ {SCGIKIT_IMPORT}"]


def test_two_runs_of_the_original_differ_in_nothing_but_what_the_comparisons_mask(sites):
    """The control: were a page to show something of its process or of its moment that no
    mask names, the comparisons with scgikit below would blame scgikit for it."""
    one = sites.quixote("scgi", "tcp", *PLAIN)
    other = sites.quixote("scgi", "tcp", *PLAIN, twin=True)
    pages = demo_pages(scgi(one))
    assert_same(pages, scgi(one), scgi(other), BODY_MASKS)
    assert_same(pages, http(sites.nginx(one)), http(sites.nginx(other)),
                BODY_MASKS + NGINX_BODY_MASKS)


def test_every_demo_page_is_answered_byte_for_byte_as_by_the_original(sites, family):
    original = sites.quixote("scgi", family, *PLAIN)
    pages = demo_pages(scgi(original))
    check_the_pages_are_the_demos(pages, scgi(original))
    copy = sites.quixote("scgikit", family, *PLAIN)
    assert_same(pages, scgi(original), scgi(copy), BODY_MASKS)


def test_every_demo_page_through_nginx_is_answered_as_through_nginx_to_the_original(
        sites, family):
    original = sites.quixote("scgi", family, *PLAIN)
    before_original = sites.nginx(original)
    pages = demo_pages(http(before_original))
    check_the_pages_are_the_demos(pages, http(before_original))
    before_copy = sites.nginx(sites.quixote("scgikit", family, *PLAIN))
    assert_same(pages, http(before_original), http(before_copy),
                          BODY_MASKS + NGINX_BODY_MASKS)


@pytest.mark.parametrize("implementation", SESSION_IMPLEMENTATIONS)
def test_with_session_affinity_every_demo_page_is_answered_as_by_the_original(
        sites, family, implementation):
    """On the original itself (implementation "scgi"): two runs of it, the control."""
    original = sites.quixote("scgi", family, *SESSIONS)
    pages = demo_pages(scgi(original))
    check_the_pages_are_the_demos(pages, scgi(original))
    served = sites.quixote(implementation, family, *SESSIONS, twin=implementation == "scgi")
    assert_same(pages, scgi(original), scgi(served), BODY_MASKS)
    assert_same(pages, http(sites.nginx(original)), http(sites.nginx(served)),
                BODY_MASKS + NGINX_BODY_MASKS)


def answer_lines(raw: bytes) -> dict[str, str]:
    """The session site's plain-text answer ("pid 123\\n...") as a dict."""
    assert status(raw) == 200, raw[:600]
    return dict(line.split(" ", 1) for line in split(raw)[1].decode().splitlines())


def login(server: QuixoteServer, name: str) -> str:
    """Log ``name`` in (Quixote makes a session) and return the session's cookie as a browser
    sends it back."""
    raw = scgi_exchange(server.address, Request("GET", f"/login?name={name}"))
    assert answer_lines(raw)["user"] == name
    cookie = [line for line in split(raw)[0] if line.lower().startswith(b"set-cookie:")]
    assert len(cookie) == 1, raw[:600]
    # Quixote's cookie, QX_session="...": the session server's SESSION_ID_PATTERN finds
    # session="..." in it.
    value = cookie[0].split(b":", 1)[1].split(b";", 1)[0].strip().decode()
    assert re.fullmatch(r'QX_session="[A-Za-z0-9_=+/-]+"', value), value
    return value


@pytest.mark.parametrize("implementation", SESSION_IMPLEMENTATIONS)
def test_with_session_affinity_each_sessions_requests_are_served_by_one_worker(
        sites, family, implementation):
    server = sites.quixote(implementation, family, *SESSIONS, *FACTORY)
    cookies = [login(server, name) for name in ("sancho", "dulcinea")]
    cookies.append('QX_session="a-session-of-our-own"')  # any value the pattern matches
    seen: dict[str, set[str]] = {cookie: set() for cookie in cookies}
    for _ in range(6):  # interleaved: each session's request comes after the others'
        for cookie in cookies:
            raw = scgi_exchange(server.address, Request("GET", "/pid",
                                                        headers=[("Cookie", cookie)]))
            seen[cookie].add(answer_lines(raw)["pid"])
    assert all(len(pids) == 1 for pids in seen.values()), seen


@pytest.mark.parametrize("implementation", SESSION_IMPLEMENTATIONS)
def test_with_session_affinity_a_session_hammering_a_slow_page_does_not_hold_up_another(
        sites, family, implementation):
    server = sites.quixote(implementation, family, *SESSIONS, *FACTORY)
    hammer = Request("GET", "/slow", headers=[("Cookie", 'QX_session="hammering"')])
    count = 6  # /slow takes SLOW_SECONDS: a session's requests are served one at a time
    sent: list[int] = []
    answers: list[bytes] = []
    failures: list[BaseException] = []

    def slow(index: int) -> None:
        try:
            with scgi_send(server.address, hammer, timeout=count * SLOW_SECONDS + 30) as sock:
                sent.append(index)
                answers.append(read_all(sock))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    # Every slow request sent, and the first answered: the others wait behind it.
    wait_until(lambda: failures or (len(sent) == count and answers), timeout=30,
               message="the slow requests sent and the first answered")
    other = scgi_exchange(server.address, Request(
        "GET", "/pid", headers=[("Cookie", 'QX_session="another"')]))
    outstanding = count - len(answers) - len(failures)
    for thread in threads:
        thread.join(count * SLOW_SECONDS + 40)
    assert not failures, failures
    assert status(other) == 200
    # The other session was answered while the hammering one still waited for some of its
    # requests: its request did not queue behind theirs.
    assert outstanding > 0, f"all {count} slow requests were answered before the other"
    assert len({answer_lines(a)["pid"] for a in answers}) == 1  # one worker, one at a time


def wsgi_masks() -> list:
    """What the WSGI path rightly answers otherwise: the pages that dump the request's
    environment (/dumpreq, /error's traceback, the form's result) show the WSGI environ,
    not the SCGI variables as they came.  It has PEP 3333's wsgi.* entries besides (whose
    values name scgikit's objects), it leaves out HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH
    (PEP 3333: the body's type and length are CONTENT_TYPE and CONTENT_LENGTH, never HTTP_*;
    scgikit.apps.wsgi), and its variables come in the WSGI adapter's order.  So those rows
    are dropped from both answers and the rest sorted; nothing else may differ."""
    rows = re.compile(rb"<tr><th>.*?</td></tr>")
    dropped = rb"(?:wsgi\.[^< ]*|HTTP_CONTENT_TYPE|HTTP_CONTENT_LENGTH)"
    return [
        *BODY_MASKS,
        (re.compile(rb"<tr><th>" + dropped + rb"</th><td>.*?</td></tr>"), b""),
        (re.compile(rb"\n" + dropped + rb" [^\n]*"), b""),
        (re.compile(rb"(<h3>environ</h3><table>)(.*?)(</table>)"),
         lambda m: m[1] + b"".join(sorted(rows.findall(m[2]))) + m[3]),
    ]


def test_quixotes_wsgi_adapter_under_scgikit_serve_answers_the_demo_as_the_original(
        sites, family):
    original = sites.quixote("scgi", family, *PLAIN)
    pages = demo_pages(scgi(original))
    wsgi = sites.wsgi(family)
    check_the_pages_are_the_demos(pages, scgi(wsgi))
    assert_same(pages, scgi(original), without_no_buffering(scgi(wsgi)), wsgi_masks())


def without_no_buffering(fetch):
    """``fetch`` with the X-Accel-Buffering: no line taken out of the head of an answer that
    streams (/extras/chunked, a generator), which scgikit adds for nginx and the original
    does not (tests/test_streaming_header.py)."""
    def fetched(request):
        head, blank, body = fetch(request).partition(b"\r\n\r\n")
        return head.replace(b"\r\nX-Accel-Buffering: no", b"", 1) + blank + body
    return fetched


def test_the_original_server_dies_of_quixotes_max_children_option(tmp_path):
    server = QuixoteServer(quixote_script("scgi", tmp_path), ["--max-children", "2"], "tcp",
                           tmp_path)
    try:
        with pytest.raises(AssertionError, match="exited with 1"):
            server.start()  # its master dies of the first request
        assert "TypeError: '<' not supported between instances of 'int' and 'str'" in server.log
    finally:
        server.stop()


def test_scgikit_serves_with_quixotes_max_children_option_as_that_many_workers(tmp_path):
    server = QuixoteServer(quixote_script("scgikit", tmp_path), ["--max-children", "2"], "tcp",
                           tmp_path)
    try:
        server.start()
        wait_until(lambda: len(worker_pids(server.pid)) == 2, timeout=20,
                   message="two workers")
    finally:
        server.stop()
