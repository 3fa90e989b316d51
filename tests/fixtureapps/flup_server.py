"""A server on flup's prefork SCGI server (PyPI flup): ``python flup_server.py ADDRESS
[SCRIPT_NAME]``, ADDRESS host:port or a unix socket path, serving porting_apps:environ."""

import sys

from flup.server.scgi_fork import WSGIServer
from porting_apps import environ

if __name__ == "__main__":
    address = sys.argv[1]
    if not address.startswith("/"):
        host, _, port = address.rpartition(":")
        address = (host, int(port))
    options = {"scriptName": sys.argv[2]} if len(sys.argv) > 2 else {}
    WSGIServer(environ, bindAddress=address, minSpare=1, maxSpare=1, **options).run()
