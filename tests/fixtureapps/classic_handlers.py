"""Classic scgi handlers, as scripts written for the original package define them."""

import scgikit.scgi_server


class Echo(scgikit.scgi_server.SCGIHandler):
    def produce(self, env, bodysize, input, output):
        body = input.read(bodysize)
        rest = input.read()
        output.write("Status: 200 OK\r\n")
        output.write(b"Content-Type: application/octet-stream\r\n\r\n")
        output.write(body)
        output.write(f"|rest={len(rest)}")


class Failing(scgikit.scgi_server.SCGIHandler):
    def produce(self, env, bodysize, input, output):
        output.write("Status: 200 OK\r\n\r\nnot yet sent")
        raise RuntimeError("secret handler detail")


class Cgilike(scgikit.scgi_server.SCGIHandler):
    def produce_cgilike(self, env, bodysize):
        import os
        import sys

        data = sys.stdin.read(bodysize)
        print("Content-Type: text/plain")
        print()
        print(f"{os.environ['REQUEST_METHOD']} {data}")


class Default(scgikit.scgi_server.SCGIHandler):
    pass


class RawConnection(scgikit.scgi_server.SCGIHandler):
    """Overrides handle_connection, the oldest style of handler."""

    def handle_connection(self, conn):
        input = conn.makefile("rb")
        env = self.read_env(input)
        conn.sendall(b"Status: 200 OK\r\n\r\nraw " + env["REQUEST_URI"].encode())
        input.close()
