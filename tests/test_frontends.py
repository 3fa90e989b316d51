"""`scgikit config`: one template per front end, filled in; the docs show the same text."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scgikit.frontends import FrontendError, render

DOCS = Path(__file__).parent.parent / "docs" / "frontends.md"


def test_nginx_for_a_tcp_backend_at_the_root():
    text = render("nginx")
    assert "location / {" in text and "scgi_pass 127.0.0.1:4000;" in text
    assert "include scgi_params;" in text and "client_max_body_size 0;" in text
    assert "upstream" not in text


def test_nginx_keeps_request_bodies_up_to_128k_in_memory():
    # nginx's default buffer (8k on x86-64) would write larger bodies to a temporary file.
    for text in (render("nginx"), render("nginx", ["10.0.0.1:4000", "10.0.0.2:4000"])):
        directives = [line.strip() for line in text.splitlines()
                      if line.strip() and not line.strip().startswith("#")]
        server = directives.index("server {")
        at = directives.index("client_max_body_size 0;")
        assert server < at and directives[at + 1] == "client_body_buffer_size 128k;"


def test_nginx_for_a_unix_socket_under_a_prefix():
    text = render("nginx", ["unix:/run/app.sock"], prefix="/app/")
    assert "scgi_pass unix:/run/app.sock;" in text
    assert "location /app/ {" in text and "return 301 /app/;" in text
    assert "--script-name /app" in text


def test_nginx_balances_several_backends_with_an_upstream():
    text = render("nginx", ["127.0.0.1:4001", "unix:/run/b.sock"])
    assert re.search(r"upstream scgikit_app \{\s+"
                     r"server 127.0.0.1:4001 max_fails=1 fail_timeout=10s;\s+"
                     r"server unix:/run/b.sock max_fails=1 fail_timeout=10s;\s+\}", text)
    assert "scgi_pass scgikit_app;" in text


def test_nginx_upstream_fails_over_but_never_resends_a_post():
    text = render("nginx", ["10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.3:4000"],
                  fail_timeout=3)
    directives = [line.strip() for line in text.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    assert "scgi_next_upstream error timeout;" in directives
    assert "scgi_next_upstream_tries 3;" in directives
    assert "scgi_connect_timeout 2s;" in directives
    assert "server 10.0.0.2:4000 max_fails=1 fail_timeout=3s;" in directives
    # non_idempotent appears only in the comment that says why it is left out.
    assert not any("non_idempotent" in line for line in directives)
    assert '"non_idempotent" is left out' in text
    assert "--fail-timeout 3" in text.splitlines()[0]


def test_nginx_hint_starts_each_backend_on_its_own_host():
    text = render("nginx", ["10.0.0.1:4000", "10.0.0.2:4001", "unix:/run/c.sock"],
                  prefix="/app")
    hints = [line for line in text.splitlines() if "scgikit serve" in line]
    assert hints == [
        "#   on 10.0.0.1: scgikit serve APP --bind 10.0.0.1:4000 --script-name /app",
        "#   on 10.0.0.2: scgikit serve APP --bind 10.0.0.2:4001 --script-name /app",
        "#   on this host: scgikit serve APP --bind unix:/run/c.sock --script-name /app",
    ]


def test_nginx_down_marks_a_backend_to_restart():
    text = render("nginx", ["10.0.0.1:4000", "10.0.0.2:4000"], down=["10.0.0.2:4000"])
    assert "server 10.0.0.1:4000 max_fails=1 fail_timeout=10s;" in text
    assert "server 10.0.0.2:4000 max_fails=1 fail_timeout=10s down;" in text
    assert "--down 10.0.0.2:4000" in text.splitlines()[0]


def test_one_backend_has_no_failover_settings():
    text = render("nginx", ["10.0.0.1:4000"])
    assert "scgi_next_upstream" not in text and "fail_timeout" not in text
    assert text.count("scgikit serve") == 1


def test_apache_proxypass_for_tcp_and_unix():
    assert 'ProxyPass "/" "scgi://127.0.0.1:4000/"' in render("apache")
    text = render("apache", ["unix:/run/app.sock"], prefix="/app", server_name="example.org")
    assert 'ProxyPass "/app" "unix:/run/app.sock|scgi://localhost/app"' in text
    assert "ServerName example.org" in text and "a2enmod proxy proxy_scgi" in text


def test_lighttpd_at_the_root_fixes_script_name():
    text = render("lighttpd")
    assert '"/" => ((' in text and '"fix-root-scriptname" => "enable"' in text
    assert '"check-local" => "disable"' in text and '"port" => 4000' in text
    text = render("lighttpd", ["unix:/run/app.sock"], prefix="/app")
    assert '"socket" => "/run/app.sock"' in text and "fix-root" not in text


@pytest.mark.parametrize(("args", "message"), [
    (("iis",), "front end 'iis': unknown; choose one of nginx, apache, lighttpd"),
    (("nginx", ["nowhere:port"]), r"--bind 'nowhere:port': not an address"),
    (("nginx", ["fd://3"]), "--bind 'fd://3': .* not an inherited fd://"),
    (("apache", ["127.0.0.1:1", "127.0.0.1:2"]), "--bind '127.0.0.1:2': several backends: "
                                                 "only the nginx config"),
    (("nginx", ["127.0.0.1:1", "127.0.0.1:1"]), "--bind '127.0.0.1:1': named twice"),
    (("nginx", ["127.0.0.1:1"], "/", None, None, 3), "--fail-timeout 3: only for an nginx "
                                                     "upstream"),
    (("nginx", ["127.0.0.1:1", "127.0.0.1:2"], "/", None, None, 0), "from 1 to 3600"),
    (("nginx", ["127.0.0.1:1", "127.0.0.1:2"], "/", None, None, None, ["127.0.0.1:3"]),
     "--down '127.0.0.1:3': not one of the --bind backends"),
    (("nginx", ["127.0.0.1:1", "127.0.0.1:2"], "/", None, None, None,
      ["127.0.0.1:1", "127.0.0.1:2"]), "the last backend up"),
    (("nginx", ["127.0.0.1:1"], "/", None, None, None, ["127.0.0.1:1"]), "of an nginx upstream"),
])
def test_impossible_configurations_are_refused(args, message):
    with pytest.raises(FrontendError, match=message):
        render(*args)


def test_prefix_must_start_with_a_slash():
    with pytest.raises(FrontendError, match="--prefix 'app': must start with '/'"):
        render("nginx", prefix="app")


def test_command_prints_the_config_and_fails_in_one_line():
    ok = subprocess.run([sys.executable, "-m", "scgikit", "config", "lighttpd", "--listen",
                         "8080"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == render("lighttpd", listen="8080")
    bad = subprocess.run([sys.executable, "-m", "scgikit", "config", "nginx", "--prefix", "x"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("server", ["nginx", "apache", "lighttpd"])
def test_the_docs_show_exactly_what_the_command_prints(server):
    assert render(server) in DOCS.read_text()


def test_the_docs_show_exactly_what_lighttpd_prints_with_listen_and_server_name():
    assert render("lighttpd", listen="8080", server_name="example.org") in DOCS.read_text()


def test_deploy_docs_show_exactly_what_the_command_prints_for_three_hosts():
    deploy = DOCS.parent / "deploy.md"
    three = ["10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.3:4000"]
    assert render("nginx", three) in deploy.read_text()
