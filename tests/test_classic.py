"""Scripts written for the original ``scgi`` package, run on scgikit's engine."""

import re
import sys
from pathlib import Path

import pytest
from scgi_raw import exchange_raw, parse_answer, request
from servers import ServerProcess, child_env, free_port, wait_until

from scgikit.protocol import encode_request

README = Path(__file__).parent.parent / "README.md"


def readme_example() -> str:
    text = README.read_text()
    code = re.search(r"```python\n(import scgikit\.scgi_server\n.*?)```", text, re.S)
    assert code, "the README shows the classic example"
    return code.group(1)


def test_readme_classic_example_runs_with_only_the_import_changed(tmp_path):
    source = readme_example()
    assert "import scgikit.scgi_server" in source
    port = free_port()
    script = tmp_path / "example.py"
    script.write_text(source.replace("port=4000", f"port={port}"))
    server = ServerProcess([sys.executable, str(script)], env=child_env()).start()
    try:
        answer = request(f"127.0.0.1:{port}", "/your/uri/?a=1&a=2&b=x")
        assert answer.status == 200
        assert answer.header("Content-type") == "text/plain; charset=UTF-8"
        assert answer.body.decode() == (
            "URI: /your/uri/\ndata: {'a': ['1', '2'], 'b': ['x']}\n")
    finally:
        assert server.stop() == 0


@pytest.fixture
def classic(serve, transport):
    def start(handler, *args):
        return serve(f"classic_handlers:{handler}", "--workers", "2", *args, bind=[transport])

    return start


@pytest.mark.parametrize("size", [0, 10, 300_000])
def test_produce_gets_env_bodysize_and_a_bounded_input(classic, size):
    server = classic("Echo")
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    answer = request(server.address, "/", method="POST", body=body)
    assert answer.status == 200
    assert answer.body == body + b"|rest=0"


def test_handler_exception_gives_500_without_traceback(classic):
    server = classic("Failing")
    answer = request(server.address, "/")
    assert answer.status == 500
    assert b"not yet sent" not in answer.raw and b"secret" not in answer.raw
    server.wait_for_log("RuntimeError: secret handler detail")
    assert request(server.address, "/").status == 500


def test_produce_cgilike_reads_stdin_and_prints_to_stdout(classic):
    answer = request(classic("Cgilike").address, "/", method="PUT", body=b"payload")
    assert answer.status == 200
    assert answer.body == b"PUT payload\n"


def test_default_produce_cgilike_lists_the_variables(classic):
    answer = request(classic("Default").address, "/listed", env={"X_CUSTOM": "v"})
    assert answer.header("Content-Type") == "text/plain; charset=utf-8"
    assert b"REQUEST_URI: '/listed'" in answer.body
    assert b"X_CUSTOM: 'v'" in answer.body


def test_overridden_handle_connection_gets_the_raw_connection(classic):
    answer = request(classic("RawConnection").address, "/raw-path")
    assert answer.body == b"raw /raw-path"


def test_malformed_request_to_a_handler_gets_400(classic):
    server = classic("Echo")
    answer = parse_answer(exchange_raw(server.address, b"5:abcde,"))
    assert answer.status == 400
    assert request(server.address, "/", method="POST", body=b"ok").body == b"ok|rest=0"


def test_scgiserver_takes_engine_options_and_recycles(tmp_path):
    port = free_port()
    script = tmp_path / "recycling.py"
    script.write_text(
        "import scgikit.scgi_server, os\n"
        "class H(scgikit.scgi_server.SCGIHandler):\n"
        "    def produce(self, env, bodysize, input, output):\n"
        "        output.write('Status: 200 OK\\r\\n\\r\\n' + str(os.getpid()))\n"
        "if __name__ == '__main__':\n"
        f"    scgikit.scgi_server.SCGIServer(H, port={port}, max_children=2,\n"
        "                                   max_requests=5).serve()\n")
    server = ServerProcess([sys.executable, str(script)], env=child_env()).start()
    try:
        pids = {request(f"127.0.0.1:{port}", "/").body for _ in range(30)}
        assert len(pids) > 2
        wait_until(lambda: "recycled after 5 requests" in server.log, message="recycling")
    finally:
        assert server.stop() == 0


def test_read_env_parses_a_head_from_a_file():
    import io

    from scgikit.scgi_server import read_env

    env = read_env(io.BytesIO(encode_request({"REQUEST_METHOD": "GET"}, 0)))
    assert env == {"CONTENT_LENGTH": "0", "SCGI": "1", "REQUEST_METHOD": "GET"}


def test_classic_handler_with_threads_is_refused_at_start_with_the_reason():
    server = ServerProcess.scgikit("classic_handlers:Echo", "--workers", "1",
                                   "--threads", "4").start()
    assert server.proc.wait(30) == 4
    server.wait_for_log("runs on the sync model only")
