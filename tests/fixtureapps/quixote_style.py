"""A handler shaped as Quixote 3.8's (quixote/server/scgi_server.py) is: a subclass of the
*original* package's SCGIHandler that overrides handle_connection, made per worker by a
``create_handler(parent_fd)`` closure around a publisher factory, and served by scgikit's
SCGIServer.  The publisher is a stand-in with the two calls the handler makes of it."""

import scgi.scgi_server

import scgikit.scgi_server


class Response:
    def __init__(self, text):
        self.text = text

    def write(self, output):
        output.write(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n" + self.text.encode())


class Publisher:
    def process(self, input, env):
        body = input.read(int(env.get("CONTENT_LENGTH") or 0)).decode()
        return Response(f"script={env['SCRIPT_NAME']} path={env['PATH_INFO']} body={body}")

    def log(self, message):
        print(message)


class QuixoteStyleHandler(scgi.scgi_server.SCGIHandler):
    def __init__(self, parent_fd, create_publisher, script_name=None):
        scgi.scgi_server.SCGIHandler.__init__(self, parent_fd)
        self.publisher = create_publisher()
        self.script_name = script_name

    def handle_connection(self, conn):
        input = conn.makefile("rb")
        output = conn.makefile("wb")
        try:
            env = self.read_env(input)
            if self.script_name is not None:  # mod_scgi sends the whole path as SCRIPT_NAME
                path = env["SCRIPT_NAME"]
                env["SCRIPT_NAME"] = self.script_name
                env["PATH_INFO"] = path[len(self.script_name):] + env.get("PATH_INFO", "")
            self.publisher.process(input, env).write(output)
            output.flush()
        finally:
            input.close()
            output.close()


class OriginalProduce(scgi.scgi_server.SCGIHandler):
    """A handler of the original package that overrides only produce."""

    def produce(self, env, bodysize, input, output):
        output.write(b"Status: 200 OK\r\n\r\noriginal " + input.read(bodysize))


def run(create_publisher, host, port, script_name=None, max_children="5"):
    def create_handler(parent_fd):
        return QuixoteStyleHandler(parent_fd, create_publisher, script_name)

    scgikit.scgi_server.SCGIServer(create_handler, host=host, port=port,
                                   max_children=max_children).serve()


if __name__ == "__main__":
    import sys

    run(Publisher, "127.0.0.1", int(sys.argv[1]), script_name="/app", max_children="2")
