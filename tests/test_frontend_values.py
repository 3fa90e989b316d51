"""`scgikit config` checks every value it is given (docs/security.md, "Generated configurations").

For each option and each front end, hypothesis makes values of every kind: well formed, out
of range, empty, huge, with spaces, NUL, line ends, quotes, ';', braces, '#', '$', non-ASCII
and non-UTF-8 (surrogate escapes, as argv carries them).  The command, run in-process,
either refuses the value (exit 2, one line on stderr naming the option, nothing on stdout)
or prints a configuration that the real front end accepts (``nginx -t``, ``apache2 -t``,
``lighttpd -tt``) and in which the value arrives as given and adds nothing: directive for
directive, it is the configuration a plain value gives, with the value in the plain one's
place, and the front end reports having read it.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from frontends import FrontEnd, available, syntax_check
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import ServerProcess, free_port, wait_until

from scgikit.cli import main

pytestmark = pytest.mark.one_path(reason="scgikit config and the front ends' own checks have no "
                                         "C twin")

NAMES = ["nginx", "apache", "lighttpd"]
APP = "tests/fixtureapps/frontend_apps.py:app"
#: Characters that mean something in one of the three grammars, or in none (and so must be
#: either refused or carried unchanged), spliced into otherwise good values.
NASTY = [" ", "\t", "\n", "\r", "\0", ";", "{", "}", "#", "$", '"', "'", "\\", "`", "|", "%",
         "?", "&", "*", "(", ")", "<", ">", "[", "]", ":", "@", ",", "=", "~", "+", ".", "/",
         "-", "_", "é", "☃", "\u2028", "\x85", "\x7f", "\udcff", "\udc80"]
DNS_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                      r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z", re.ASCII)


def config(*argv: str) -> tuple[int, str, str]:
    """``scgikit config ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["config", *argv])
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def assert_refused(option: str, status: int, out: str, err: str) -> None:
    assert status == 2, (status, out, err)
    assert out == "" and "Traceback" not in err
    assert err.endswith("\n") and len(err.splitlines()) == 1 and err.strip(), err
    assert err.startswith("scgikit config: ") and option in err, err


def directives(text: str) -> list[str]:
    """The lines that are not comments or blank: what the front end obeys."""
    return [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


#: What the front end must report having read: a text, any one of several, or a test of it all.
Read = str | tuple[str, ...] | Callable[[str], bool]


class Expected:
    """What a configuration with an accepted value must be, found without the code under test.

    ``plain``: the arguments that give the same configuration with a plain value; ``swaps``:
    the plain value's pieces and the given one's, as they are written in the configuration;
    ``read``: what the front end's own report of what it read must include.
    """

    def __init__(self, plain: list[str], swaps: list[tuple[str, str]],
                 read: dict[str, list[Read]]) -> None:
        self.plain, self.swaps, self.read = plain, swaps, read


def host_port(value: str, default_host: str | None) -> tuple[str | None, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` read by the test: host canonical, or None."""
    if value.startswith("["):
        host, port = value[1:].split("]:")
    elif ":" in value:
        host, _, port = value.rpartition(":")
    else:
        host, port = default_host, value
    assert re.fullmatch(r"[0-9]+", port, re.ASCII), value
    assert 1 <= int(port) <= 65535, value
    if host == "" and default_host:
        host = default_host
    return (None if host is None else str(ipaddress.ip_address(host))), int(port)


def expect_server_name(name: str, value: str) -> Expected:
    host = value.lower()
    assert DNS_NAME.match(host), value
    return Expected(["--server-name", "plain.example"], [("plain.example", host)],
                    {"nginx": [f"server_name {host};"], "apache": [f" {host} ("],
                     "lighttpd": [f'$HTTP["host"] == "{host}"']})


def expect_listen(name: str, value: str) -> Expected:
    host, port = host_port(value, None)
    assert not re.match("0[0-9]", value.rpartition(":")[2]), value  # no port written oddly
    swaps = [("8009", str(port))]
    if host is None:
        plain, shown = "8009", f"*:{port}"
    elif ":" in host:
        plain, shown = "[::9]:8009", f"[{host}]:{port}"
        swaps.append(("::9", host))
    else:
        plain, shown = "127.0.0.9:8009", f"{host}:{port}"
        swaps.append(("127.0.0.9", host))
    socket = f":{port}" if host is None else shown
    return Expected(["--listen", plain], swaps,
                    {"nginx": [lambda said: f"listen {value};" in said or nginx_bound(said) == (
                        same_host(host), port)] if value != "80" else [],
                     "apache": [lambda said: apache_vhost(said) == (same_host(host), port)],
                     "lighttpd": [f'$SERVER["socket"] == "{socket}"']})


def same_host(host: str | None) -> str | None:
    """An address as the front ends may list it: every address as None, IPv4-mapped as IPv4."""
    if host is None or host == "*":
        return None
    ip = ipaddress.ip_address(host.strip("[]"))
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return None if ip.is_unspecified else str(ip)


def nginx_bound(said: str) -> tuple[str | None, int] | None:
    """The address nginx -t failed to bind here (not this machine's): what it read."""
    found = re.search(r"bind\(\) to (\S+):([0-9]+) failed", said)
    return found and (same_host(found.group(1)), int(found.group(2)))


def apache_vhost(said: str) -> tuple[str | None, int]:
    """The address and port of the one virtual host Apache listed (-D DUMP_VHOSTS)."""
    (line,) = [line for line in said.splitlines() if re.search(r" localhost \(|\) *$", line)
               and not line.startswith(("VirtualHost", " "))]
    host, _, port = line.split()[0].rpartition(":")
    return same_host(host), int(port)


def expect_bind(name: str, value: str) -> Expected:
    if value.startswith(("unix:", "/")):
        path = value.removeprefix("unix:")
        path = path[2:] if value.startswith("unix://") else path
        limit = {"nginx": 107, "lighttpd": 105, "apache": 95}[name]
        assert path.startswith("/") and not path.endswith("/") and len(path) <= limit, value
        return Expected(["--bind", "unix:/plain.sock"], [("/plain.sock", path)],
                        {"nginx": [f"scgi_pass unix:{path};"], "apache": [],
                         "lighttpd": [f'"socket" => "{path}"']})
    if ":" not in value and not value.isdigit():
        value += ":4000"  # a host alone: the server's default port
    host, port = host_port(value, "127.0.0.1")
    assert host is not None and not ipaddress.ip_address(host).is_unspecified
    plain, at = ("[::9]:4009", "::9") if ":" in host else ("127.0.0.9:4009", "127.0.0.9")
    return Expected(["--bind", plain], [(at, host), ("4009", str(port))],
                    {"nginx": [], "apache": [],
                     "lighttpd": [f'"host" => "{host}"', f'"port" => {port}']})


def expect_prefix(name: str, value: str) -> Expected:
    path = value.rstrip("/") or "/"
    assert re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", path if path != "/" else "", re.ASCII)
    assert not {".", ".."} & set(path.split("/")), value
    if path == "/":
        return Expected([], [], {})
    return Expected(["--prefix", "/plain"], [("/plain", path)],
                    {"nginx": [f"location {path}/ {{"], "apache": [],
                     "lighttpd": [f'"{path}" =>']})


TWO = ["--bind", "127.0.0.1:4001", "--bind", "127.0.0.1:4002"]


def expect_fail_timeout(name: str, value: str) -> Expected:
    assert name == "nginx" and re.fullmatch(r"[1-9][0-9]*", value) and int(value) <= 3600
    return Expected(["--fail-timeout", "9"], [("fail_timeout=9s", f"fail_timeout={value}s")],
                    {"nginx": [f"fail_timeout={value}s"]})


def expect_down(name: str, value: str) -> Expected:
    assert name == "nginx"
    host, port = host_port(value, "127.0.0.1")
    line = f"server {host}:{port} max_fails=1 fail_timeout=10s"
    assert host == "127.0.0.1" and port in (4001, 4002), value
    return Expected([], [(f"{line};", f"{line} down;")], {"nginx": [f"{line} down;"]})


#: option: (the arguments that carry the value for a front end, the expectation if accepted)
OPTIONS = {
    "--server-name": (lambda name, v: ["--server-name", v], expect_server_name),
    "--listen": (lambda name, v: ["--listen", v], expect_listen),
    "--bind": (lambda name, v: ["--bind", v], expect_bind),
    "--prefix": (lambda name, v: ["--prefix", v], expect_prefix),
    "--fail-timeout": (lambda name, v: [*(TWO if name == "nginx" else []), "--fail-timeout", v],
                       expect_fail_timeout),
    "--down": (lambda name, v: [*(TWO if name == "nginx" else ["--bind", "127.0.0.1:4001"]),
                                "--down", v], expect_down),
}


def check_value(name: str, option: str, value: str) -> None:
    """Refused in one line, or served as given by the real front end (the module's claim)."""
    arguments, expect = OPTIONS[option]
    status, out, err = config(name, *arguments(name, value))
    if status != 0:
        assert_refused(option, status, out, err)
        return
    assert err == "", err
    expected = expect(name, value)
    ok, said = syntax_check(name, out)
    assert ok, f"{name} refused what scgikit config printed:\n{said}\n{out}"
    status, plain, _ = config(name, *expected.plain, *arguments(name, value)[:-2])
    assert status == 0, plain
    lines = directives(plain)
    for old, new in expected.swaps:
        lines = [line.replace(old, new) for line in lines]
    assert directives(out) == lines
    read = " ".join(said.split())  # lighttpd -p lines its values up with spaces
    for texts in expected.read.get(name, []):
        if callable(texts):
            assert texts(said), f"{name} did not read {value!r}:\n{said}"
            continue
        texts = (texts,) if isinstance(texts, str) else texts  # any one of several
        assert any(" ".join(text.split()) in read for text in texts), (
            f"{name} did not read {texts!r}:\n{said}")


# --- values hypothesis makes, for each option --------------------------------------------------

def spoiled(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A good value with a troublesome character put in somewhere."""
    return st.builds(lambda text, ch, at: text[:at % (len(text) + 1)] + ch
                     + text[at % (len(text) + 1):],
                     good, st.sampled_from(NASTY), st.integers(0, 200))


def values(good: st.SearchStrategy[str], huge: str) -> st.SearchStrategy[str]:
    return st.one_of(good, spoiled(good), spoiled(spoiled(good)),
                     st.text(st.sampled_from(NASTY + list("aZ09")), max_size=20),
                     st.text(max_size=20), st.just(""), st.integers(1, 40).map(lambda n: huge * n))


def ports(low: int = -5, high: int = 70000) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


def ips() -> st.SearchStrategy[str]:
    return st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip))


GOOD = {
    "--server-name": st.one_of(
        st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\.[a-z0-9-]{1,8}){0,3}\Z"),
        st.sampled_from(["example.org", "*.example.org", ".example.org", "EXAMPLE.org",
                         "a" * 63 + ".org", "a" * 64 + ".org", "-a.org", "a-.org", "a..org",
                         "a_b.org", "example.org.", "xn--caf-dma.example", "café.example",
                         "\u212aelvin.example", "[::1]", "127.0.0.1"])),
    "--listen": st.one_of(
        ports(), st.builds("{}:{}".format, ips(), ports()),
        st.sampled_from(["8080", "0", "65535", "65536", "080", "+80", " 80", "80 ", "٨٠",
                         "localhost:80", "::1:80", "[::1]", "[127.0.0.1]:80", "0.0.0.0:80",
                         "[::]:443", "[fe80::1%eth0]:80", "127.1:80", "*:80", ":80", "[::1:0]:1",
                         "[::ffff:127.0.0.1]:80"])),
    "--bind": st.one_of(
        st.builds("{}:{}".format, ips(), ports()),
        st.from_regex(r"\A(unix:)?/[a-z0-9/._+@,=~-]{1,30}\Z"),
        st.sampled_from(["127.0.0.1:4000", "[::1]:4000", "unix:/run/app.sock", "/run/app.sock",
                         "unix:///run/app.sock", "unix://run/app.sock", "./app.sock",
                         "../app.sock", "localhost:4000", "0.0.0.0:4000", "[::]:4000",
                         "[fe80::1%eth0]:4000", "fd://3", "4000", ":4000", "10.0.0.1",
                         "127.0.0.1:0", "127.0.0.1:²",
                         *("/" + "a" * (n - 1) for n in (95, 96, 105, 106, 107, 108))])),
    "--prefix": st.one_of(
        st.from_regex(r"\A(/[A-Za-z0-9._~-]{1,8}){1,4}/?\Z"),
        st.sampled_from(["/", "/app", "/app/", "//", "/a//b", "/./a", "/a/..", "app",
                         "/a%20b", "/café", "/a$b", "/a;b"])),
    "--fail-timeout": st.one_of(
        ports(-5, 5000), st.sampled_from(["abc", "1_0", "٥", "+5", " 5", "10s", "3600",
                                          "3601", "1", "01", "1e3"])),
    "--down": st.one_of(
        st.sampled_from(["127.0.0.1:4001", "127.0.0.1:4002", "[::1]:4001", "127.0.0.1:04001",
                         "127.0.0.1:4003", "127.0.0.1", ":4002"]),
        st.builds("{}:{}".format, ips(), ports(4000, 4003))),
}
HUGE = {"--server-name": "a" * 70 + ".", "--listen": "8", "--bind": "/aaaaaaaaaa",
        "--prefix": "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--fail-timeout": "9",
        "--down": "127.0.0.1:4001"}


#: The front ends, each skipped where it is not installed.
FRONT_ENDS = [pytest.param(name, marks=pytest.mark.skipif(available(name) is not None,
                                                           reason=str(available(name))))
              for name in NAMES]
# The values are checked by Python on both paths: the pure-Python run takes a smaller sample.
PURE = os.environ.get("SCGIKIT_PURE", "") not in ("", "0")
EXAMPLES = settings(max_examples=8 if PURE else 30, deadline=None)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--server-name"], HUGE["--server-name"]))
def test_every_server_name_is_a_dns_name_or_refused(name, value):
    check_value(name, "--server-name", value)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--listen"], HUGE["--listen"]))
def test_every_listen_value_is_a_port_or_an_ip_and_port_or_refused(name, value):
    check_value(name, "--listen", value)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--bind"], HUGE["--bind"]))
def test_every_bind_address_is_an_ip_and_port_or_a_plain_absolute_path_or_refused(name, value):
    check_value(name, "--bind", value)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--prefix"], HUGE["--prefix"]))
def test_every_prefix_is_plain_path_segments_or_refused(name, value):
    check_value(name, "--prefix", value)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--fail-timeout"], HUGE["--fail-timeout"]))
def test_every_fail_timeout_is_1_to_3600_seconds_of_an_nginx_upstream_or_refused(name, value):
    check_value(name, "--fail-timeout", value)


@pytest.mark.parametrize("name", FRONT_ENDS)
@EXAMPLES
@given(value=values(GOOD["--down"], HUGE["--down"]))
def test_every_down_value_is_a_backend_of_the_nginx_upstream_or_refused(name, value):
    check_value(name, "--down", value)


# --- the cases that were known to slip through, and each rule of docs/security.md -------------

def refusal(*argv: str) -> str:
    status, out, err = config(*argv)
    assert_refused(argv[-2], status, out, err)
    return err.rstrip("\n")


@pytest.mark.parametrize("name", NAMES)
def test_a_listen_value_that_is_no_port_is_refused_before_anything_is_printed(name):
    allowed = "allowed: PORT, IPV4:PORT or [IPV6]:PORT, with a port from 1 to 65535"
    assert refusal(name, "--listen", "abc") == (
        f"scgikit config: --listen 'abc': not a port from 1 to 65535; {allowed}")
    assert refusal(name, "--listen", "99999") == (
        f"scgikit config: --listen '99999': not a port from 1 to 65535; {allowed}")
    assert refusal(name, "--listen", "localhost:80").startswith(
        "scgikit config: --listen 'localhost:80': 'localhost' is not an IPv4 or IPv6 address")
    assert "multicast" in refusal(name, "--listen", "224.0.0.1:80")


@pytest.mark.parametrize("name", NAMES)
def test_a_server_name_cannot_inject_a_directive(name):
    assert refusal(name, "--server-name", "a; include /etc/passwd") == (
        "scgikit config: --server-name 'a; include /etc/passwd': ';' cannot appear in a server "
        "name; allowed: a DNS name: labels of 1 to 63 letters, digits and '-' (not first or "
        "last), joined by '.', at most 253 characters")
    for value in ("a;include", "a}", "a{", "a#b", "$host", 'a"b', "a'b", "a\nb", "*.example.org",
                  "a_b.example", "café.example", "a\udcffb"):
        assert "cannot appear in a server name" in refusal(name, "--server-name", value)
    for value in (".example.org", "example.org.", "a..b", "a-.example", "", "a" * 64):
        assert "not a DNS name" in refusal(name, "--server-name", value)


@pytest.mark.parametrize("name", NAMES)
def test_a_server_name_is_written_in_lowercase(name):
    status, out, _ = config(name, "--server-name", "WWW.Example.ORG")
    assert status == 0 and "www.example.org" in out and "Example" not in out


@pytest.mark.parametrize(("argv", "problem"), [
    (["--bind", "localhost:4000"], "'localhost' is not an IPv4 or IPv6 address"),
    (["--bind", "0.0.0.0:4000"], "not every interface"),
    (["--bind", "[::]:4000"], "not every interface"),
    (["--bind", "127.0.0.1:0"], "the port 0 is not a number from 1 to 65535"),
    (["--bind", "[fe80::1%eth0]:4000"], "'fe80::1%eth0' is not an IPv4 or IPv6 address"),
    (["--bind", "255.255.255.255:4000"], "broadcast"),
    (["--listen", "[::ffff:127.0.0.1]:80"], "an IPv4 address in IPv6 form"),
    (["--bind", "[::ffff:127.0.0.1]:4000"], "an IPv4 address in IPv6 form"),
    (["--bind", "127.0.0.1:²"], "not an address"),
    (["--bind", "fd://3"], "not an inherited fd://"),
    (["--bind", "./app.sock"], "allowed: an absolute path"),
    (["--bind", "unix:/run/"], "not a folder ending in '/'"),
    (["--bind", "/run/my app.sock"], "' ' cannot appear in a socket path"),
    (["--bind", "unix:/run/a;b.sock"], "';' cannot appear in a socket path"),
    (["--bind", "/run/a$b.sock"], "'$' cannot appear in a socket path"),
    (["--bind", "/run/a\udcffb.sock"], "'\\udcff' cannot appear in a socket path"),
    (["--prefix", "/a b"], "' ' cannot appear in a prefix"),
    (["--prefix", "/a$b"], "'$' cannot appear in a prefix"),
    (["--prefix", "/a/../b"], "'..' segment"),
    (["--prefix", "/" + "a" * 1024], "1025 characters"),
    (["--fail-timeout", "3601"], "not a whole number of seconds from 1 to 3600"),
    (["--fail-timeout", "1_0"], "not a whole number of seconds from 1 to 3600"),
])
def test_refusals_name_the_option_the_value_and_what_is_wrong(argv, problem):
    for name in NAMES:
        args = [*TWO, *argv] if argv[0] == "--fail-timeout" else argv
        err = refusal(name, *args)
        assert err.startswith(f"scgikit config: {argv[0]} {argv[1]!r}: ") and problem in err


def test_socket_path_lengths_are_each_front_ends_own():
    for name, longest in {"nginx": 107, "lighttpd": 105, "apache": 95}.items():
        status, out, _ = config(name, "--bind", "/" + "a" * (longest - 1))
        assert status == 0 and syntax_check(name, out)[0]
        assert f"at most {longest} bytes" in refusal(name, "--bind", "/" + "a" * longest)


@pytest.mark.parametrize("name", FRONT_ENDS)
def test_lighttpd_listen_and_server_name_become_its_socket_and_host_conditions(name):
    status, out, _ = config(name, "--listen", "8080", "--server-name", "x")
    assert status == 0
    ok, said = syntax_check(name, out)
    assert ok, said
    read = " ".join(said.split())
    if name == "lighttpd":  # the app inside both conditions, as lighttpd parsed them
        assert re.search(r'\$SERVER\["socket"\] == ":8080" \{ .*\$HTTP\["host"\] == "x" \{ .*'
                         r'scgi\.server = \( "/" =>', read), said
    elif name == "apache":
        assert "*:8080 x (" in read and "Listen 8080 (Debian" in out
    else:
        assert "listen 8080; server_name x;" in read


def _get(port: int, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/env", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def backend():
    server = ServerProcess.scgikit(APP, "--workers", "1", bind=("127.0.0.1:0",)).start()
    yield server
    server.stop()


@pytest.mark.skipif(available("lighttpd") is not None, reason=str(available("lighttpd")))
def test_lighttpd_serves_the_app_only_on_its_listen_socket_for_its_server_name(backend):
    listen = free_port()
    front = FrontEnd("lighttpd", Path(tempfile.mkdtemp(prefix="scgikit-lighttpd-")),
                     [backend.address], listen=f"127.0.0.1:{listen}", server_name="app.test")
    try:
        front.start()
        wait_until(lambda: _accepting(listen), timeout=20, message="lighttpd on --listen")
        status, body = _get(listen, "app.test")
        assert status == 200 and json.loads(body)["HTTP_HOST"] == "app.test"
        assert _get(listen, f"APP.test:{listen}")[0] == 200  # lighttpd: lowercase, no port
        assert _get(listen, "other.test")[0] != 200  # another host: not the app
        assert _get(front.port, "app.test")[0] != 200  # its other socket: not the app
    finally:
        front.stop()


def _accepting(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("name", FRONT_ENDS)
def test_a_socket_path_with_every_allowed_character_is_reached_by_each_front_end(name):
    folder = Path(tempfile.mkdtemp(prefix="scgikit-sock-"))
    folder.chmod(0o755)  # Apache's children run as www-data
    path = f"{folder}/a+b@c,d=e~f-g_h.0.sock"
    server = ServerProcess.scgikit(APP, "--workers", "1", "--socket-mode", "0666",
                                   bind=(f"unix:{path}",)).start()
    front = FrontEnd(name, folder, [path])
    try:
        assert f"{path}" in front.snippet
        front.start()
        status, body = _get(front.port, "localhost")
        assert status == 200, body[:300]
        assert json.loads(body)["PATH_INFO"] == "/env"
    finally:
        front.stop()
        server.stop()
