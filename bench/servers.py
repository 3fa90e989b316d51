"""Start one peer server: `python servers.py KIND PORT|unix:PATH WORKERS`.

(scgikit, uWSGI and aioscgi have command lines of their own.)
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402


def scgi22(address, workers):
    from scgi.scgi_server import SCGIHandler, SCGIServer

    class Handler(SCGIHandler):
        def produce(self, env, bodysize, input, output):
            apps.produce(env, bodysize, input, output)

    class Server(SCGIServer):
        def get_listening_socket(self):
            # scgi 2.2 listens on TCP only; this is the one change for a unix socket.
            if isinstance(address, tuple):
                return super().get_listening_socket()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address)
            return sock

    host, port = address if isinstance(address, tuple) else ("127.0.0.1", 0)
    Server(handler_class=Handler, host=host, port=port, max_children=workers).serve()


def flup_fork(address, workers):
    from flup.server.scgi_fork import WSGIServer

    WSGIServer(apps.app, bindAddress=address, minSpare=workers,
               maxSpare=workers, maxChildren=workers, loggingLevel=40).run()


def flup_threads(address, workers):
    from flup.server.scgi import WSGIServer

    WSGIServer(apps.app, bindAddress=address, loggingLevel=40).run()


if __name__ == "__main__":
    kind, where, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    address = where[5:] if where.startswith("unix:") else ("127.0.0.1", int(where))
    run = {"scgi22": scgi22, "flup-fork": flup_fork, "flup-threads": flup_threads}[kind]
    run(address, workers)
