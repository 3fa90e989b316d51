import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "fixtureapps"))

from servers import ServerProcess  # noqa: E402


@pytest.fixture(params=["tcp", "unix"])
def transport(request, tmp_path):
    """Every server scenario runs over TCP and over a unix socket."""
    if request.param == "tcp":
        return "127.0.0.1:0"
    return f"unix:{tmp_path}/scgi.sock"


@pytest.fixture(params=["sync", "threads"])
def model(request):
    """The WSGI worker models: a module that uses this fixture (``pytestmark``) runs each of
    its server scenarios on both, since every server behaviour must hold on every model."""
    return request.param


@pytest.fixture
def serve(tmp_path, request):
    """Start ``scgikit serve`` subprocesses; all are stopped at the end of the test."""
    started = []
    model = request.getfixturevalue("model") if "model" in request.fixturenames else None

    def start(target, *args, bind=("127.0.0.1:0",), ready=r"Listening at: ", **kwargs):
        if model == "threads" and "--worker" not in args and "--threads" not in args:
            args = (*args, "--worker", "threads", "--threads", "4")
        server = ServerProcess.scgikit(target, *args, bind=bind, **kwargs)
        started.append(server)
        return server.start(ready=ready)

    yield start
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.stop(timeout=30)


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_env():
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(name, None)
