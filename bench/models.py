"""Worker models side by side: `python models.py MODEL PORT|unix:PATH WORKERS`.

Prefork sync is scgikit itself (`scgikit serve`).  The other models are small
prototypes built on scgikit's own parts, so that the comparison measures the
model and not the code around it:

threads   WORKERS processes, each with THREADS threads blocking in accept(); every
          connection goes through scgikit's worker code and WSGI adapter.
asyncio   WORKERS processes, each one asyncio event loop running the ASGI app of
          apps.py; the head is parsed by scgikit.protocol.
uvloop    the same on uvloop's event loop.

They serve the benchmark's routes correctly and nothing more: no timeouts, no
limits, no graceful stop (the benchmark kills the process group).
"""

import asyncio
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402

from scgikit.protocol import format_response_head, parse_head  # noqa: E402

THREADS = 4


def listen(address):
    if address.startswith("unix:"):
        path = address[5:]
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(address)))
    sock.listen(1024)
    return sock


def threads(listener):
    from scgikit.apps.wsgi import WSGIAdapter
    from scgikit.config import Config
    from scgikit.protocol import parse_head
    from scgikit.server.connection import RECV_SIZE, run_app

    adapter = WSGIAdapter(apps.app, "", "localhost", "80")
    config = Config(target="apps:app")

    def serve():
        while True:
            conn, _ = listener.accept()
            try:
                # The benchmark's requests arrive whole: the shared path's ready case.
                data = conn.recv(RECV_SIZE)
                run_app(conn, adapter, config, data, parse_head(data), time.monotonic())
            finally:
                conn.close()

    pool = [threading.Thread(target=serve, daemon=True) for _ in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def _scope(variables, server):
    path = variables.get("PATH_INFO") or (
        variables.get("REQUEST_URI") or variables.get("DOCUMENT_URI") or "/").partition("?")[0]
    headers = [(name[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in variables.items() if name.startswith("HTTP_")]
    if "CONTENT_TYPE" in variables:
        headers.append((b"content-type", variables["CONTENT_TYPE"].encode("latin-1")))
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": variables.get("REQUEST_METHOD", "GET"),
        "scheme": "http", "path": path, "raw_path": path.encode("latin-1"),
        "query_string": variables.get("QUERY_STRING", "").encode("latin-1"),
        "root_path": "", "headers": headers, "server": server, "client": None,
    }


async def _answer(reader, writer, app, server):
    try:
        data = await reader.read(65536)
        parsed = parse_head(data) if data else None
        while parsed is None:
            more = await reader.read(65536)
            if not more:
                return
            data += more
            parsed = parse_head(data)
        variables, length, consumed = parsed
        body = data[consumed:consumed + length]
        if len(body) < length:
            body += await reader.readexactly(length - len(body))
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        head = []

        async def receive():
            if pending:
                return pending.pop()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                headers = [(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in message.get("headers", ())]
                head.append(format_response_head(f"{message['status']} OK", headers))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if head:
                    chunk = head.pop() + chunk
                writer.write(chunk)
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()

        await app(_scope(variables, server), receive, send)
        await writer.drain()
    finally:
        writer.close()


def event_loop(listener, use_uvloop):
    if use_uvloop:
        import uvloop

        uvloop.install()
    listener.setblocking(False)
    server = ("127.0.0.1", 0)

    async def main():
        await asyncio.start_server(
            lambda r, w: _answer(r, w, apps.asgi_app, server), sock=listener, backlog=1024)
        await asyncio.Event().wait()

    asyncio.run(main())


def main():
    model, address, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    listener = listen(address)
    run = {"threads": threads,
           "asyncio": lambda sock: event_loop(sock, False),
           "uvloop": lambda sock: event_loop(sock, True)}[model]
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                run(listener)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
