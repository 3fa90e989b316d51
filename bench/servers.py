"""Start one peer server: `python servers.py KIND PORT WORKERS` (scgikit and uWSGI have CLIs)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402


def scgi22(port, workers):
    from scgi.scgi_server import SCGIHandler, SCGIServer

    class Handler(SCGIHandler):
        def produce(self, env, bodysize, input, output):
            apps.produce(env, bodysize, input, output)

    SCGIServer(handler_class=Handler, host="127.0.0.1", port=port,
               max_children=workers).serve()


def flup_fork(port, workers):
    from flup.server.scgi_fork import WSGIServer

    WSGIServer(apps.app, bindAddress=("127.0.0.1", port), minSpare=workers,
               maxSpare=workers, maxChildren=workers, loggingLevel=40).run()


def flup_threads(port, workers):
    from flup.server.scgi import WSGIServer

    WSGIServer(apps.app, bindAddress=("127.0.0.1", port),
               loggingLevel=40).run()


if __name__ == "__main__":
    kind, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"scgi22": scgi22, "flup-fork": flup_fork, "flup-threads": flup_threads}[kind](port, workers)
