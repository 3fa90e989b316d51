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


@pytest.fixture
def serve(tmp_path):
    """Start ``scgikit serve`` subprocesses; all are stopped at the end of the test."""
    started = []

    def start(target, *args, bind=("127.0.0.1:0",), ready=r"Listening at: ", **kwargs):
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
