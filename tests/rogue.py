"""A real SCGI server on loopback that answers exactly the bytes a test gives it.

Clients must cope with servers that misbehave: a garbled head, a body cut
short, no answer at all, or a server that reads the request and stalls.
"""

from __future__ import annotations

import socket
import threading

from scgikit.protocol import parse_head


class RogueServer:
    """Reads each request whole, then sends ``answer`` and closes (or stalls if None)."""

    def __init__(self, answer: bytes | None, path: str | None = None) -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX if path else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(path if path else ("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.address = (f"unix:{path}" if path
                        else f"127.0.0.1:{self._sock.getsockname()[1]}")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stalled: list[socket.socket] = []

    def __enter__(self) -> RogueServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self._stalled:
            conn.close()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            data = b""
            while (parsed := parse_head(data)) is None or len(data) < parsed[2] + parsed[1]:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if parsed:
                environ, length, start = parsed
                self.requests.append((environ, data[start:start + length]))
            if self.answer is None:
                self._stalled.append(conn)
                continue
            conn.sendall(self.answer)
            conn.close()
