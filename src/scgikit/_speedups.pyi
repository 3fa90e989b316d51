from collections.abc import Callable, Iterable
from typing import Any

from scgikit.apps.wsgi import ExcInfo, FileWrapper, WSGIAdapter
from scgikit.server.sockets import Connection
from scgikit.server.streams import Body

def parse_head(
    data: bytes | bytearray, max_header_size: int = ...
) -> tuple[dict[str, str], int, int] | None: ...
def setup(fallback: Callable[..., tuple[dict[str, str], int, int] | None],
          default_max_header_size: int, /) -> None: ...
def wsgi_environ(base: dict[str, Any], variables: dict[str, str], body: Body,
                 script_name: str, /) -> dict[str, Any]: ...
def setup_wsgi(*, environ_pure: Callable[[dict[str, Any], dict[str, str], Body, str],
                                         dict[str, Any]],
               split_path: Callable[[dict[str, str], str], tuple[str, str]],
               merge_cookie: Callable[[str, dict[str, str]], str],
               encode_head: Callable[[str, list[tuple[str, str]]], bytes],
               send_rest: Callable[[Connection, bytes, bytes | bytearray | memoryview, int,
                                    float | None], None],
               client_gone: type[Exception], pure_exchange: type,
               socket_type: type[Connection]) -> None: ...

class Exchange:
    sock: Connection
    adapter: WSGIAdapter
    timeout: float | None
    status: str | None
    head: bytes | None
    sent: int
    def __init__(self, sock: Connection, adapter: WSGIAdapter, timeout: float | None) -> None: ...
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def respond(self, result: Iterable[bytes]) -> None: ...
    def sendfile(self, wrapper: FileWrapper) -> None: ...
