"""The first minutes with scgikit, as a new user has them (issue 13).

The quickstart's two commands work on a fresh Debian (its own Python refuses ``pip install``
outside a virtual environment, and its venv module is a separate package); every start-up
error is one plain line that names the option and says what was expected; and the client
knows an HTTP server when it is pointed at one.  The quickstart itself, with Debian's Python
in a fresh clone and a real install from PyPI, is run by CI (``.ci/quickstart``).
"""

import http.server
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from frontends import FrontEnd, available
from servers import ServerProcess, child_env

from scgikit import client

pytestmark = pytest.mark.one_path(reason="the README's commands")

ROOT = Path(__file__).resolve().parent.parent
HELLO = b"Hello from scgikit!\n"  # examples/hello.py's answer


def scgikit(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "scgikit", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env or child_env())


def scgi_test(*args):
    code = "import sys; from scgikit.cli import scgi_test_main; sys.exit(scgi_test_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          env=child_env(), timeout=60)


def one_plain_line(stderr: str) -> str:
    """The whole of stderr, checked to be a single line and no log record or traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert not re.match(r"\[\d{4}-", lines[0]) and "Traceback" not in stderr, stderr
    return lines[0]


# --- the quickstart ----------------------------------------------------------------------

def readme_quickstart() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_quickstart_is_two_commands_and_ci_runs_both():
    serve, test = readme_quickstart()
    assert serve == "scripts/serve-example"
    assert test == "scripts/install-test-deps && scripts/test"
    ci = "\n".join(line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                   if not line.startswith("#"))
    steps = ["scripts/install-test-deps", ". .venv/bin/activate", "python -m mypy --strict src",
             "assert p.ACCELERATED", "scripts/test", ".ci/quickstart"]
    assert [ci.index(step) for step in steps] == sorted(ci.index(step) for step in steps)
    # The whole suite twice: with the C accelerator, then on the pure-Python path.
    runs = [line for line in (ROOT / "scripts" / "test").read_text().splitlines()
            if "python -m pytest" in line]
    assert runs == ['python -m pytest -q -n 4 "$@"', 'SCGIKIT_PURE=1 python -m pytest -q -n 4 "$@"']
    smoke = (ROOT / ".ci" / "quickstart").read_text()
    assert "setsid scripts/serve-example >" in smoke and "/usr/bin/python3" in smoke
    assert ".venv/bin/scgi-test --timeout 30 /" in smoke
    assert HELLO.decode().strip() in smoke


def test_the_sample_app_answers_what_ci_expects_of_it():
    namespace: dict = {}
    exec((ROOT / "examples" / "hello.py").read_text(), namespace)
    assert b"".join(namespace["app"]({}, lambda status, headers: None)) == HELLO


def fake_debian(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of scripts/make-venv, and a PATH whose python3 lacks the venv module until
    a fake apt-get installs python3.X-venv (logged to apt.log); sudo just runs its command."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "make-venv", project / "scripts" / "make-venv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    installed = tmp_path / "venv-package-installed"
    scripts = {
        "python3": f"""\
            #!/bin/sh
            if [ "$2" = "import ensurepip, venv" ] && [ ! -e {installed} ]; then exit 1; fi
            if [ "$1" = -m ] && [ "$2" = venv ]; then
              exec {sys.executable} -m venv --without-pip "$4"
            fi
            exec {sys.executable} "$@"
            """,
        "apt-get": f"""\
            #!/bin/sh
            echo "$*" >> {tmp_path}/apt.log
            if [ "$1" = install ]; then touch {installed}; fi
            """,
        "sudo": """\
            #!/bin/sh
            exec "$@"
            """,
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(textwrap.dedent(text))
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    env.pop("PYTHON", None)
    return project, env


def test_make_venv_installs_debians_venv_package_when_python3_lacks_it(tmp_path):
    project, env = fake_debian(tmp_path)
    result = subprocess.run([project / "scripts" / "make-venv"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    version = "{}.{}".format(*sys.version_info[:2])
    assert f"install -y -qq --no-install-recommends python{version}-venv" in (
        tmp_path / "apt.log").read_text()
    check = subprocess.run([project / ".venv" / "bin" / "python", "-c", "import sys; "
                            "print(sys.prefix != sys.base_prefix)"], capture_output=True,
                           text=True, timeout=60)
    assert check.stdout == "True\n"


def test_make_venv_leaves_a_working_venv_alone(tmp_path):
    project, env = fake_debian(tmp_path)
    make_venv = [project / "scripts" / "make-venv"]
    subprocess.run(make_venv, env=env, check=True, capture_output=True, timeout=120)
    (project / ".venv" / "kept").write_text("")
    (tmp_path / "apt.log").unlink()
    subprocess.run(make_venv, env=env, check=True, capture_output=True, timeout=120)
    assert (project / ".venv" / "kept").exists()
    assert not (tmp_path / "apt.log").exists()


def test_serve_example_serves_the_sample_app_from_the_venv_and_scgi_test_gets_its_answer(
        tmp_path):
    # A copy of the project whose .venv already has scgikit from the copy's src/ (as
    # after a first run), so that no test reaches PyPI; CI runs the whole install.
    project = tmp_path / "project"
    for part in ("scripts", "src", "examples"):
        shutil.copytree(ROOT / part, project / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                   timeout=120)
    site = subprocess.run([venv / "bin" / "python", "-c", "import site; "
                           "print(site.getsitepackages()[0])"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()
    Path(site, "scgikit-src.pth").write_text(f"{project / 'src'}\n")
    for name, call in (("scgikit", "main"), ("scgi-test", "scgi_test_main")):
        (venv / "bin" / name).write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\n"
                                         f"from scgikit.cli import {call}\nsys.exit({call}())\n")
        (venv / "bin" / name).chmod(0o755)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    server = ServerProcess([project / "scripts" / "serve-example", "--bind", "127.0.0.1:0",
                            "--workers", "1"], env=env).start()
    try:
        port = server.address.rpartition(":")[2]
        answer = subprocess.run([venv / "bin" / "scgi-test", "--port", port, "/"],
                                capture_output=True, env=env, timeout=60)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith(b"Status: 200 OK\r\n")
        assert answer.stdout.endswith(b"\r\n\r\n" + HELLO)
        assert "installing" not in server.log  # the copy's venv was used as it was
    finally:
        assert server.stop() == 0


# --- binding: paths are unix sockets; every error one plain line -------------------------

def test_bind_to_an_absolute_path_listens_on_a_unix_socket(tmp_path):
    path = tmp_path / "app.sock"
    with ServerProcess.scgikit("wsgi_apps:hello", bind=[str(path)]) as server:
        assert server.address == f"unix:{path}"
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert client.request(str(path), "/").body == b"hello"


def test_bind_to_a_dot_slash_path_listens_on_a_unix_socket_in_the_working_directory(tmp_path):
    with ServerProcess.scgikit("wsgi_apps:hello", bind=["./app.sock"], cwd=tmp_path) as server:
        assert server.address == "unix:./app.sock"
        assert stat.S_ISSOCK((tmp_path / "app.sock").stat().st_mode)
        assert client.request(str(tmp_path / "app.sock"), "/").body == b"hello"


@pytest.mark.parametrize(("address", "why"), [
    ("999.1.1.1:80", "cannot listen on 999.1.1.1:80: '999.1.1.1' is not an IP address or a "
                     "known host name"),
    ("/no-such-folder-x/app.sock", "/no-such-folder-x/app.sock: the folder /no-such-folder-x "
                                   "does not exist"),
    ("::1:80", "'::1:80': write IPv6 addresses in brackets, as [::1]:4000"),
    ("127.0.0.1:70000", "'127.0.0.1:70000': port must be a number from 0 to 65535"),
    ("app.sock:x", "'app.sock:x': port must be a number from 0 to 65535"),
    ("app/x.sock", "'app/x.sock': 'app/x.sock' is not a host name or an IP address (a unix "
                   "socket path starts with /, ./ or ../, or unix:)"),
])
def test_a_bind_error_is_one_plain_line_naming_the_option_and_what_is_wrong(address, why):
    result = scgikit("serve", "wsgi_apps:hello", "--bind", address)
    assert result.returncode == 2
    line = one_plain_line(result.stderr)
    assert line.startswith(f"scgikit serve: --bind: {why}")


def test_a_port_in_use_is_the_same_plain_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = scgikit("serve", "wsgi_apps:hello", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert one_plain_line(result.stderr).startswith(
        f"scgikit serve: --bind: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_an_unwritable_access_log_is_a_plain_option_error(tmp_path):
    result = scgikit("serve", "wsgi_apps:hello", "--bind", "127.0.0.1:0",
                     "--access-log", str(tmp_path / "missing" / "access.log"))
    assert result.returncode == 2
    assert one_plain_line(result.stderr) == (
        f"scgikit serve: --access-log: {tmp_path}/missing/access.log: the folder "
        f"{tmp_path}/missing does not exist")


def test_http_gateway_without_h11_refuses_to_start_with_the_install_hint():
    code = ("import sys; sys.modules['h11'] = None\n"  # as if scgikit[http] were not installed
            "from scgikit.cli import main\n"
            "sys.exit(main(['serve', 'wsgi_apps:hello', '--bind', '127.0.0.1:0', "
            "'--http', '127.0.0.1:0']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=child_env(), timeout=60)
    assert result.returncode == 2
    assert one_plain_line(result.stderr) == (
        "scgikit serve: --http: the development HTTP gateway needs h11, which is not "
        "installed: pip install 'scgikit[http]'")


# --- the command line ----------------------------------------------------------------------

def test_serve_help_states_each_default_once():
    result = scgikit("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    options = text.split("options:", 1)[1]
    # Each option's help ends with "(default X; env SCGIKIT_NAME)".
    helps = re.split(r"env SCGIKIT_[A-Z_]+\)", options)[:-1]
    assert len(helps) > 20
    for help_text in helps:
        assert help_text.count("default") == 1, help_text


@pytest.mark.parametrize("command", [["serve", "wsgi_apps:hello"], ["request", "/"]])
def test_an_unknown_option_is_reported_by_the_subcommand(command):
    result = scgikit(*command, "--no-such-option")
    assert result.returncode == 2
    assert result.stderr == (f"scgikit {command[0]}: unrecognized arguments: --no-such-option "
                             f"(see scgikit {command[0]} --help)\n")
    assert "scgikit: error" not in result.stderr


# --- the client, pointed at an HTTP server ---------------------------------------------------

@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    reason = available("nginx")
    if reason:
        pytest.skip(reason)
    front = FrontEnd("nginx", tmp_path_factory.mktemp("nginx"), ["127.0.0.1:9"]).start()
    yield f"127.0.0.1:{front.port}"
    front.stop()


def test_request_to_a_front_ends_http_port_says_it_is_an_http_server(nginx):
    result = scgikit("request", nginx, "/")
    assert result.returncode == 8
    assert result.stdout == ""
    line = one_plain_line(result.stderr)
    assert line.startswith(f"scgikit request: {nginx} is an HTTP server, not an SCGI one: "
                           "it answered 'HTTP/1.1 400 Bad Request' (Server: nginx")
    assert "give the SCGI backend's address instead" in line


def test_scgi_test_prints_an_http_servers_answer_then_says_what_it_is(nginx):
    host, _, port = nginx.rpartition(":")
    result = scgi_test("--host", host, "--port", port, "/")
    assert result.returncode == 8
    assert result.stdout.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"is an HTTP server, not an SCGI one" in result.stderr


@pytest.fixture
def python_http_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_request_to_python_http_server_times_out_with_the_http_server_hint(python_http_server):
    # It waits for the line end of a request line, which an SCGI request never sends.
    result = scgikit("request", python_http_server, "/", "-m", "0.5")
    assert result.returncode == 28
    line = one_plain_line(result.stderr)
    assert line.startswith("scgikit request: no answer from the server within 0.5 s; if "
                           f"{python_http_server} is an HTTP server rather than an SCGI one")


def test_scgi_test_to_python_http_server_times_out_with_the_http_server_hint(
        python_http_server):
    host, _, port = python_http_server.rpartition(":")
    result = scgi_test("--host", host, "--port", port, "-m", "0.5", "/")
    assert result.returncode == 28
    assert b"is an HTTP server rather than an SCGI one" in result.stderr
