import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "fixtureapps"))

from servers import MODELS, ServerProcess, for_model  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "models(*names, reason): run the test on these worker models only, for the "
        "reason given (a test about one adapter or model, not a server behaviour)")
    config.addinivalue_line(
        "markers", "one_path(reason): the pure-Python run (SCGIKIT_PURE=1) leaves these tests "
        "out, for the reason given: their code has no C twin, or they run both paths themselves")


def pytest_collection_modifyitems(config, items):
    """The suite runs twice (scripts/test): the second run, on the pure-Python path, leaves
    out what the first already proved whatever the path (``one_path``)."""
    if os.environ.get("SCGIKIT_PURE", "") in ("", "0"):
        return
    left = [item for item in items if item.get_closest_marker("one_path") is not None]
    if left:
        for item in left:
            if not item.get_closest_marker("one_path").kwargs.get("reason"):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.one_path needs reason=")
        config.hook.pytest_deselected(items=left)
        items[:] = [item for item in items if item.get_closest_marker("one_path") is None]


@pytest.fixture(params=["tcp", "unix"])
def transport(request, tmp_path):
    """Every server scenario runs over TCP and over a unix socket."""
    if request.param == "tcp":
        return "127.0.0.1:0"
    return f"unix:{tmp_path}/scgi.sock"


@pytest.fixture
def model(request):
    """The worker model (servers.MODELS): a test that uses this fixture (an argument, or
    ``pytestmark = pytest.mark.usefixtures("model")``) runs on each, since every server
    behaviour must hold on every model; ``serve`` serves its app there (``for_model``:
    the threads, or the ASGI twin; asyncio's event loop: ``_asyncio_loop``).
    ``@pytest.mark.models(..., reason=...)`` keeps a test about one adapter on the models
    it is about."""
    return request.param


def pytest_generate_tests(metafunc):
    """Parametrize ``model`` (whichever fixture of that name a module uses, at its scope)."""
    if "model" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "model" in mark.args[0]:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: choose worker models with "
                "@pytest.mark.models(..., reason=...), not by parametrizing 'model'")
    names = MODELS
    marker = metafunc.definition.get_closest_marker("models")
    if marker is not None:
        names = marker.args
        if not names or set(names) - set(MODELS) or not marker.kwargs.get("reason"):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: @pytest.mark.models takes models among "
                f"{MODELS} and a reason= saying why the test is not on all of them")
    metafunc.parametrize("model", names, indirect=True)


@pytest.fixture
def serve(tmp_path, request):
    """Start ``scgikit serve`` subprocesses; all are stopped at the end of the test.

    In a test on a worker model, each serves on that model (``servers.for_model``): the
    ASGI twin of the app on asyncio, or ``asgi=`` (an app the test wrote for the model).
    """
    started = []
    model = request.getfixturevalue("model") if "model" in request.fixturenames else None

    def start(target, *args, bind=("127.0.0.1:0",), ready=r"Listening at: ", asgi=None,
              **kwargs):
        if model is not None:
            target, args = for_model(model, target, args, asgi=asgi)
        server = ServerProcess.scgikit(target, *args, bind=bind, **kwargs)
        started.append(server)
        return server.start(ready=ready)

    yield start
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.stop(timeout=30)


@pytest.fixture(scope="session", autouse=True)
def _asyncio_loop():
    """The event loop of the asyncio model's servers: SCGIKIT_LOOP when set, else the
    default (uvloop, when installed) with the C accelerator and asyncio's own on the
    pure-Python run (SCGIKIT_PURE=1), which leaves C aside: the suite's two runs
    (scripts/test) meet every server scenario on both loops.  (test_server_asgi.py runs
    each of its scenarios on each loop itself.)"""
    if os.environ.get("SCGIKIT_PURE", "") not in ("", "0"):
        os.environ.setdefault("SCGIKIT_LOOP", "asyncio")


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_env():
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(name, None)
