"""``scgikit check --front-end FILE``: the configuration ``scgikit config`` writes fits the
server it was written for, and each way a copy of it can go wrong is found, with its fix.

The command runs in-process (``cli.main``), as the user runs it but without a new Python
for each case; the one case that needs another interpreter (crossplane missing) runs as
a subprocess.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from servers import child_env, free_port

from scgikit.cli import main
from scgikit.frontends import render
from scgikit.frontends.apache_rules import apache_seconds
from scgikit.frontends.nginx_rules import nginx_seconds, nginx_size
from scgikit.frontends.readers import LighttpdArray, ReadError, read_apache, read_lighttpd

pytestmark = pytest.mark.one_path(reason="front-end files are read by Python only")


@pytest.fixture
def short_dir():
    """A folder with a short path: Apache reads a unix socket path of at most 95 bytes."""
    path = tempfile.mkdtemp(prefix="fe-", dir="/tmp")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def run_check(short_dir, capsys, monkeypatch):
    """``scgikit check wsgi_apps:hello --front-end FILE SERVER_OPTIONS``, FILE holding
    ``text``: (status, stdout, stderr lines with FILE for its path)."""
    monkeypatch.chdir(os.getcwd())  # --chdir moves this process: back after the test
    monkeypatch.setattr(sys, "path", list(sys.path))  # and check puts its folder on sys.path

    def run(text, *options, name="front.conf"):
        path = f"{short_dir}/{name}"
        with open(path, "w") as fh:
            fh.write(text)
        status = main(["check", "wsgi_apps:hello", "--workers", "1", "--front-end", path,
                       *options])
        out, err = capsys.readouterr()
        return status, out, [line.replace(path, "FILE", 1) for line in err.splitlines()]

    return run


def line_of(text, needle):
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def warning(text, needle, what_and_fix):
    return f"scgikit check: warning: FILE:{line_of(text, needle)}: {what_and_fix}"


def error(text, needle, what_and_fix):
    return f"scgikit check: error: FILE:{line_of(text, needle)}: {what_and_fix}"


# --- what scgikit config writes fits ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["nginx", "apache", "lighttpd"])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_the_generated_configuration_fits_the_server_it_was_made_for(run_check, short_dir,
                                                                      kind, transport):
    bind = f"127.0.0.1:{free_port()}" if transport == "tcp" else f"unix:{short_dir}/app.sock"
    text = render(kind, [bind], prefix="/app", listen=8080, server_name="example.org")
    status, out, err = run_check(text, "--bind", bind, "--script-name", "/app")
    assert (status, err) == (0, [])
    title = {"nginx": "nginx", "apache": "Apache", "lighttpd": "lighttpd"}[kind]
    assert out.endswith(f"front end: {short_dir}/front.conf ({title})\nok\n")


def test_an_nginx_upstream_of_the_servers_own_addresses_fits(run_check, short_dir):
    binds = [f"127.0.0.1:{free_port()}", f"unix:{short_dir}/app.sock"]
    text = render("nginx", binds)
    status, _, err = run_check(text, "--bind", binds[0], "--bind", binds[1])
    assert (status, err) == (0, [])


def test_the_generated_configuration_fits_a_server_that_limits_bodies_once_told(run_check):
    bind = f"127.0.0.1:{free_port()}"
    text = render("nginx", [bind]).replace("client_max_body_size 0;",
                                          "client_max_body_size 8m;")
    assert run_check(text, "--bind", bind, "--max-body-size", "8m")[::2] == (0, [])


# --- nginx: each broken copy, its one finding --------------------------------------------------

@pytest.fixture
def nginx(run_check):
    """The generated nginx configuration for a server at a free port, edited by ``change``
    (old text, new text), checked against that server with ``options``."""

    def check(change=None, *options, listen=None):
        bind = f"127.0.0.1:{free_port()}"
        text = render("nginx", [bind], listen=listen)
        if change is not None:
            assert change[0] in text
            text = text.replace(*change)
        status, _, err = run_check(text, "--bind", bind, *options)
        return status, err, text, bind

    return check


def test_a_read_timeout_shorter_than_the_servers_is_an_error(nginx):
    status, err, text, _ = nginx(("include scgi_params;",
                                  "include scgi_params;\n        scgi_read_timeout 10s;"))
    assert status == 2
    assert err == [error(text, "scgi_read_timeout", "scgi_read_timeout 10s is shorter than "
                         "--timeout 30: a request that runs longer is answered 504 by nginx "
                         "while its worker goes on; fix: scgi_read_timeout 30s;")]


def test_the_read_timeout_set_for_the_whole_server_is_inherited(nginx):
    status, err, text, _ = nginx(("server_name localhost;",
                                  "server_name localhost;\n    scgi_read_timeout 20;"))
    assert status == 2
    assert err == [error(text, "scgi_read_timeout", "scgi_read_timeout 20 is shorter than "
                         "--timeout 30: a request that runs longer is answered 504 by nginx "
                         "while its worker goes on; fix: scgi_read_timeout 30s;")]


def test_nginxs_default_read_timeout_against_a_longer_server_timeout(nginx):
    status, err, text, _ = nginx(None, "--timeout", "120")
    assert status == 2
    assert err == [
        error(text, "scgi_pass", "scgi_read_timeout (nginx's default, 60s) is shorter than "
              "--timeout 120: a request that runs longer is answered 504 by nginx while its "
              "worker goes on; fix: scgi_read_timeout 120s;"),
        error(text, "scgi_pass", "scgi_send_timeout (nginx's default, 60s) is shorter than "
              "--timeout 120: a request body the app reads later than that is cut off (504) "
              "while its worker goes on; fix: scgi_send_timeout 120s;")]


def test_a_server_without_timeout_behind_nginxs_is_a_warning(nginx):
    status, err, text, _ = nginx(None, "--timeout", "0")
    assert status == 0
    assert err == [warning(text, "scgi_pass", "scgi_read_timeout (nginx's default, 60s): nginx "
                           "gives up on a request after 60s (504) while the server, with "
                           "--timeout 0, lets its worker go on without end; fix: --timeout 60 "
                           "or less")]


def test_a_body_limit_larger_than_the_servers_is_a_warning(nginx):
    status, err, text, _ = nginx(("client_max_body_size 0;", "client_max_body_size 10m;"),
                                 "--max-body-size", "1m")
    assert status == 0
    assert err == [warning(text, "client_max_body_size", "client_max_body_size 10m is larger "
                           "than the server's (--max-body-size 1048576): the server refuses "
                           "(413) bodies nginx took in whole; fix: client_max_body_size 1m;")]


def test_no_body_limit_in_front_of_a_server_with_one_is_a_warning(nginx):
    status, err, text, _ = nginx(None, "--max-body-size", "300k")
    assert status == 0
    assert err == [warning(text, "client_max_body_size", "client_max_body_size 0 sets no limit "
                           "(--max-body-size 307200): the server refuses (413) bodies nginx "
                           "took in whole; fix: client_max_body_size 300k;")]


def test_a_location_without_scgi_params_is_an_error(nginx):
    status, err, text, _ = nginx(("include scgi_params;\n", ""))
    assert status == 2
    assert err == [error(text, "scgi_pass", "the requests passed here lack REQUEST_METHOD, "
                         "REQUEST_URI, QUERY_STRING (no include scgi_params): without "
                         "REQUEST_METHOD, every request is taken for a GET; without "
                         "REQUEST_URI, every request is taken for one of /; without "
                         "QUERY_STRING, every query string is lost; fix: include scgi_params; "
                         "beside the scgi_pass")]


def test_a_location_with_a_scgi_param_of_its_own_inherits_none_of_the_server_blocks(run_check):
    # As in nginx: the location's scgi_param REQUEST_START hides the server block's lines.
    bind = f"127.0.0.1:{free_port()}"
    text = render("nginx", [bind]).replace("        include scgi_params;\n", "").replace(
        "server_name localhost;", "server_name localhost;\n    include scgi_params;")
    status, _, err = run_check(text, "--bind", bind)
    assert status == 2
    assert len(err) == 1 and "lack REQUEST_METHOD, REQUEST_URI, QUERY_STRING" in err[0]
    text = text.replace("        scgi_param REQUEST_START $msec;\n", "")
    assert run_check(text, "--bind", bind)[::2] == (0, [])


def test_a_host_param_without_the_port_behind_another_port_is_a_warning(nginx):
    change = ("include scgi_params;", "include scgi_params;\n        scgi_param HTTP_HOST $host;")
    status, err, text, _ = nginx(change, listen=8080)
    assert status == 0
    assert err == [warning(text, "HTTP_HOST", "scgi_param HTTP_HOST $host leaves out the Host "
                           "header's port, and nginx listens on port 8080: an app that builds "
                           "its URLs from HTTP_HOST leaves the port out; fix: scgi_param "
                           "HTTP_HOST $http_host;")]
    assert nginx(change)[:2] == (0, [])  # port 80: the Host header has none to lose
    assert nginx((change[0], change[0] + "\n        scgi_param HTTP_HOST $http_host;"),
                 listen=8080)[:2] == (0, [])


def test_ignoring_x_accel_buffering_is_a_warning_unless_the_server_lets_nginx_buffer(nginx):
    change = ("include scgi_params;",
              "include scgi_params;\n        scgi_ignore_headers X-Accel-Buffering;")
    status, err, text, _ = nginx(change)
    assert status == 0
    assert err == [warning(text, "scgi_ignore_headers", "scgi_ignore_headers X-Accel-Buffering: "
                           "nginx holds an answer that streams (server-sent events, a "
                           "generator's chunks) until its end, though the server asks it not "
                           "to (X-Accel-Buffering: no); fix: take X-Accel-Buffering out of "
                           "scgi_ignore_headers (or, to have nginx buffer every answer, start "
                           "the server with --front-end-buffering)")]
    assert nginx(change, "--front-end-buffering")[:2] == (0, [])


def test_buffering_off_against_front_end_buffering_is_a_warning(nginx):
    change = ("include scgi_params;", "include scgi_params;\n        scgi_buffering off;")
    status, err, text, _ = nginx(change, "--front-end-buffering")
    assert status == 0
    assert err == [warning(text, "scgi_buffering", "scgi_buffering off: nginx buffers no "
                           "answer, though the server's --front-end-buffering is there to let "
                           "it; a slow client holds a worker for the whole answer; fix: remove "
                           "scgi_buffering off (or drop --front-end-buffering)")]
    assert nginx(change)[:2] == (0, [])


def test_nginx_passing_to_another_port_is_an_error(run_check):
    bind, other = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = render("nginx", [other])
    status, _, err = run_check(text, "--bind", bind)
    assert status == 2
    assert err == [error(text, "scgi_pass", f"nginx sends requests to {other}, where the server "
                         f"does not listen (it listens at {bind}): every request there fails; "
                         f"fix: scgi_pass {bind};")]


def test_nginx_passing_to_another_socket_is_an_error(run_check, short_dir):
    text = render("nginx", [f"unix:{short_dir}/old.sock"])
    status, _, err = run_check(text, "--bind", f"unix:{short_dir}/app.sock")
    assert status == 2
    assert err == [error(text, "scgi_pass", f"nginx sends requests to unix:{short_dir}/old.sock, "
                         f"where the server does not listen (it listens at "
                         f"unix:{short_dir}/app.sock): every request there fails; fix: "
                         f"scgi_pass unix:{short_dir}/app.sock;")]


def test_a_relative_socket_is_found_where_the_server_makes_it(run_check, short_dir):
    text = render("nginx", [f"unix:{short_dir}/app.sock"])
    status, _, err = run_check(text, "--bind", "unix:app.sock", "--chdir", short_dir)
    assert (status, err) == (0, [])


def test_an_upstream_backend_on_this_machine_the_server_does_not_bind_is_a_warning(run_check):
    bound, other = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = render("nginx", [bound, other, "10.0.0.2:4000"])
    status, _, err = run_check(text, "--bind", bound)
    assert status == 0
    assert err == [warning(text, f"server {other}", f"{other}: the server does not listen "
                           f"there (it listens at {bound}): nginx tries it and fails over; fix: "
                           f"remove {other}, or start a server there")]


def test_a_backend_marked_down_is_not_counted(run_check):
    bound, other = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = render("nginx", [bound, other], down=[other])
    assert run_check(text, "--bind", bound)[::2] == (0, [])


def test_a_wildcard_server_is_reached_at_its_loopback_address(run_check):
    port = free_port()
    text = render("nginx", [f"127.0.0.1:{port}"])
    assert run_check(text, "--bind", f"0.0.0.0:{port}", "--allow-from",
                     "127.0.0.1")[::2] == (0, [])
    status, _, err = run_check(text, "--bind", f"[::]:{port}", "--allow-from", "::1")
    assert status == 2 and f"fix: scgi_pass [::1]:{port};" in err[0]


def test_systemd_sockets_are_not_compared(run_check, monkeypatch):
    monkeypatch.setenv("LISTEN_FDS", "1")
    text = render("nginx", [f"127.0.0.1:{free_port()}"])
    assert run_check(text)[::2] == (0, [])


# --- Apache ------------------------------------------------------------------------------------

@pytest.fixture
def apache(run_check):
    def check(change=None, *options):
        bind = f"127.0.0.1:{free_port()}"
        text = render("apache", [bind])
        if change is not None:
            assert change[0] in text
            text = text.replace(*change)
        status, _, err = run_check(text, "--bind", bind, *options)
        return status, err, text, bind

    return check


def test_apache_proxy_timeout_shorter_than_the_servers_is_an_error(apache):
    status, err, text, _ = apache(("ServerName localhost",
                                   "ServerName localhost\n    ProxyTimeout 20"))
    assert status == 2
    assert err == [error(text, "ProxyTimeout", "ProxyTimeout 20 is shorter than --timeout 30: a "
                         "request that runs longer is answered 504 by Apache while its worker "
                         "goes on; fix: ProxyTimeout 30")]


def test_apache_timeout_on_the_proxypass_line_wins(apache):
    status, err, text, _ = apache(("/\"\n", "/\" timeout=5\n"),
                                  "--timeout", "10")
    assert status == 2
    assert err == [error(text, "ProxyPass", "timeout=5 is shorter than --timeout 10: a request "
                         "that runs longer is answered 504 by Apache while its worker goes on; "
                         "fix: timeout=10 on this ProxyPass")]


def test_apaches_default_timeout_against_a_longer_server_timeout(apache):
    status, err, text, _ = apache(None, "--timeout", "75")
    assert status == 2
    assert err == [error(text, "ProxyPass", "Timeout (Apache's default, 60s) is shorter than "
                         "--timeout 75: a request that runs longer is answered 504 by Apache "
                         "while its worker goes on; fix: ProxyTimeout 75")]


def test_apache_body_limit_larger_than_the_servers_is_a_warning(apache):
    status, err, text, _ = apache(("ServerName localhost",
                                   "ServerName localhost\n    LimitRequestBody 0"),
                                  "--max-body-size", "1000")
    assert status == 0
    assert err == [warning(text, "LimitRequestBody", "LimitRequestBody 0: Apache takes bodies "
                           "larger than the server's --max-body-size 1000, which the server "
                           "then refuses (413); fix: LimitRequestBody 1000")]
    assert apache(("ServerName localhost", "ServerName localhost\n    LimitRequestBody 1000"),
                  "--max-body-size", "1000")[:2] == (0, [])


def test_apache_proxying_to_another_socket_is_an_error(run_check, short_dir):
    text = render("apache", [f"unix:{short_dir}/old.sock"])
    status, _, err = run_check(text, "--bind", f"unix:{short_dir}/app.sock")
    assert status == 2
    assert err == [error(text, "ProxyPass", f"Apache sends requests to "
                         f"unix:{short_dir}/old.sock|scgi://localhost/, where the server does "
                         f"not listen (it listens at unix:{short_dir}/app.sock): every request "
                         f"there fails; fix: ProxyPass \"PREFIX\" "
                         f"\"unix:{short_dir}/app.sock|scgi://localhost/PREFIX\"")]


def test_apache_balancer_members_and_scgimount_are_backends_too(run_check):
    bind = f"127.0.0.1:{free_port()}"
    text = (f'<Proxy "balancer://app">\n    BalancerMember "scgi://{bind}"\n</Proxy>\n'
            'ProxyPass "/app" "balancer://app/app"\n'
            f"SCGIMount /old 127.0.0.1:{free_port()}\n")
    status, _, err = run_check(text, "--bind", bind)
    assert status == 2
    assert len(err) == 1 and err[0].startswith("scgikit check: error: FILE:5: Apache sends")
    assert err[0].endswith(f"fix: SCGIMount /old {bind}")


# --- lighttpd ----------------------------------------------------------------------------------

def test_lighttpd_read_timeout_shorter_than_the_servers_is_an_error(run_check):
    bind = f"127.0.0.1:{free_port()}"
    text = render("lighttpd", [bind]).replace('"check-local"', '"read-timeout" => 10,\n'
                                              '        "check-local"')
    status, _, err = run_check(text, "--bind", bind)
    assert status == 2
    assert err == [error(text, '"/" => ((', '"read-timeout" => 10 is shorter than --timeout 30: '
                         'a request that runs longer fails in lighttpd while its worker goes '
                         'on; fix: "read-timeout" => 30,')]


def test_lighttpd_request_size_larger_than_the_servers_is_a_warning(run_check):
    bind = f"127.0.0.1:{free_port()}"
    text = render("lighttpd", [bind]) + "server.max-request-size = 4096\n"
    status, _, err = run_check(text, "--bind", bind, "--max-body-size", "1m")
    assert status == 0
    assert err == [warning(text, "server.max-request-size", "server.max-request-size = 4096: "
                           "lighttpd takes bodies larger than the server's --max-body-size "
                           "1048576, which the server then refuses (413); fix: "
                           "server.max-request-size = 1024")]
    text = text.replace("4096", "1024")
    assert run_check(text, "--bind", bind, "--max-body-size", "1m")[::2] == (0, [])


def test_lighttpd_passing_to_another_port_is_an_error(run_check):
    bind, other = f"127.0.0.1:{free_port()}", free_port()
    text = render("lighttpd", [f"127.0.0.1:{other}"])
    status, _, err = run_check(text, "--bind", bind)
    assert status == 2
    port = bind.rpartition(":")[2]
    assert err == [error(text, "scgi.server", f'lighttpd sends requests to "host" => '
                         f'"127.0.0.1", "port" => {other}, where the server does not listen '
                         f'(it listens at {bind}): every request there fails; fix: scgi.server '
                         f'= ( "/" => (( "host" => "127.0.0.1", "port" => {port}, '
                         f'"check-local" => "disable" )) )')]


# --- files that are no front end's, and nginx without crossplane -----------------------------

def test_a_file_of_no_front_end_is_an_error(run_check):
    status, out, err = run_check("server { listen 80; }\n")
    assert status == 2 and "front end" not in out
    assert err == ["scgikit check: error: --front-end FILE: cannot tell which front end this "
                   "configures (found: none): nginx's has scgi_pass, Apache's ProxyPass to "
                   "scgi:// or SCGIMount, lighttpd's scgi.server"]


def test_a_missing_file_is_an_error(capsys, short_dir):
    assert main(["check", "wsgi_apps:hello", "--front-end", f"{short_dir}/none.conf"]) == 2
    assert capsys.readouterr().err == (f"scgikit check: error: --front-end {short_dir}/none.conf:"
                                       " cannot read it: No such file or directory\n")


def test_nginx_text_crossplane_refuses_is_an_error(run_check):
    text = render("nginx").replace("scgi_pass 127.0.0.1:4000;", "scgi_pass 127.0.0.1:4000; }")
    status, _, err = run_check(text)
    assert status == 2
    last = len(text.splitlines())  # the server block's brace, now one too many
    assert err == [f'scgikit check: error: FILE:{last}: not valid nginx: unexpected "}}"']


def test_without_crossplane_nginx_files_say_how_to_install_it(short_dir):
    path = f"{short_dir}/nginx.conf"
    with open(path, "w") as fh:
        fh.write(render("nginx"))
    code = ("import sys; sys.modules['crossplane'] = None\n"  # as if it were not installed
            "import scgikit.frontends.inspection, scgikit.master.check\n"
            "from scgikit.cli import main\n"
            f"sys.exit(main(['check', 'wsgi_apps:hello', '--front-end', {path!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=child_env())
    assert result.returncode == 2
    assert result.stderr == (f"scgikit check: error: --front-end {path}: reading an nginx "
                             "configuration needs crossplane: pip install 'scgikit[frontend]' "
                             "(or pip install crossplane)\n")


# --- the readers and units ---------------------------------------------------------------------

def test_nginx_times_and_sizes_read_as_nginx_reads_them():
    assert [nginx_seconds(t) for t in ("60", "60s", "1m30s", "500ms", "2h", "1x")] == [
        60, 60, 90, 0.5, 7200, None]
    assert [nginx_size(t) for t in ("0", "1m", "512k", "2G", "100", "1t")] == [
        0, 1024**2, 512 * 1024, 2 * 1024**3, 100, None]
    assert [apache_seconds(t) for t in ("60", "500ms", "2mi", "x")] == [60, 0.5, 120, None]


def test_the_apache_reader_joins_continued_lines_and_nests_sections():
    directives = read_apache('# a comment\n<VirtualHost *:80>\n  ProxyPass "/a b" \\\n'
                             '      "scgi://127.0.0.1:4000/"\n</VirtualHost>\n')
    (vhost,) = directives
    assert (vhost.name, vhost.args, vhost.line) == ("VirtualHost", ("*:80",), 2)
    assert [(d.name, d.args, d.line) for d in vhost.block] == [
        ("ProxyPass", ("/a b", "scgi://127.0.0.1:4000/"), 3)]
    with pytest.raises(ReadError, match="<Location> is never closed") as caught:
        read_apache("\n<Location />\n")
    assert caught.value.line == 2


def test_the_lighttpd_reader_keeps_arrays_with_their_lines():
    (setting, condition) = read_lighttpd(
        'server.modules += ( "mod_scgi" ) # comment\n'
        '$HTTP["host"] == "a.example" {\n'
        '  scgi.server = ( "/" => (\n    ( "host" => "127.0.0.1", "port" => 4000 ),\n  ) )\n'
        '}\n')
    assert setting.value == LighttpdArray(1, ((None, "mod_scgi"),))
    assert condition.name == '$ HTTP [ host ] == a.example'
    (scgi,) = condition.block
    hosts = scgi.value.get("/")
    assert hosts.items[0][1] == LighttpdArray(4, (("host", "127.0.0.1"), ("port", 4000)))
    (include,) = read_lighttpd('include_shell "/usr/share/lighttpd/use-ipv6.pl " + server.port')
    assert include.value == ("/usr/share/lighttpd/use-ipv6.pl ", ("var", "server.port"))
    with pytest.raises(ReadError, match="expected a value, found '='") as caught:
        read_lighttpd('a = 1\nb = = 2\n')
    assert caught.value.line == 2


def test_the_docs_example_is_what_check_prints(short_dir, capsys, monkeypatch):
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "frontends.md").read_text()
    command = ("scgikit check myapp:app --workers 2 --max-body-size 8m --front-end "
               "nginx.conf")
    shown = docs.split(f"$ {command}\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(short_dir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    text = render("nginx").replace("include scgi_params;",
                                   "include scgi_params;\n        scgi_read_timeout 10s;")
    Path(short_dir, "nginx.conf").write_text(text)
    args = command.replace("myapp:app", "wsgi_apps:hello").split()[2:]
    assert main(["check", *args]) == 2
    out, err = capsys.readouterr()
    assert (out + err).replace("wsgi_apps:hello", "myapp:app") == shown
