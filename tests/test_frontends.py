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


def test_nginx_for_a_unix_socket_under_a_prefix():
    text = render("nginx", ["unix:/run/app.sock"], prefix="/app/")
    assert "scgi_pass unix:/run/app.sock;" in text
    assert "location /app/ {" in text and "return 301 /app/;" in text
    assert "--script-name /app" in text


def test_nginx_balances_several_backends_with_an_upstream():
    text = render("nginx", ["127.0.0.1:4001", "unix:/run/b.sock"])
    assert re.search(r"upstream scgikit_app \{\s+server 127.0.0.1:4001;\s+"
                     r"server unix:/run/b.sock;\s+\}", text)
    assert "scgi_pass scgikit_app;" in text


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
    (("iis",), "unknown front end"),
    (("nginx", ["nowhere:port"]), "port"),
    (("nginx", ["fd://3"]), "fd://"),
    (("apache", ["127.0.0.1:1", "127.0.0.1:2"]), "only the nginx config"),
])
def test_impossible_configurations_are_refused(args, message):
    with pytest.raises(FrontendError, match=message):
        render(*args)


def test_prefix_must_start_with_a_slash():
    with pytest.raises(FrontendError, match="must start with '/'"):
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
