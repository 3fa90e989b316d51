"""Classic handlers made by factories: callables that take ``parent_fd`` and return a
handler, as the original package's SCGIServer took them for ``handler_class``."""

import scgikit.scgi_server
from scgikit.scgi_server import SCGIHandler, handler_factory


class Greeter(SCGIHandler):
    """Answers with its greeting (given by its factory), the path, the parent_fd it was
    made with and a count of the requests this handler has served."""

    def __init__(self, parent_fd, greeting):
        super().__init__(parent_fd)
        self.greeting = greeting
        self.served = 0

    def produce(self, env, bodysize, input, output):
        self.served += 1
        body = input.read(bodysize).decode()
        output.write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        output.write(f"{self.greeting} {env['REQUEST_URI']} parent_fd={self.parent_fd!r} "
                     f"served={self.served} body={body}")


class RawGreeter(SCGIHandler):
    """Takes the whole connection (``handle_connection``), as the oldest handlers did."""

    def handle_connection(self, conn):
        input = conn.makefile("rb")
        env = self.read_env(input)
        conn.sendall(b"Status: 200 OK\r\n\r\nraw " + env["REQUEST_URI"].encode())
        input.close()


def create_handler(parent_fd):
    """Unmarked: scgikit serve takes it for a WSGI app unless told --interface handler."""
    return Greeter(parent_fd, "made")


@handler_factory
def marked(parent_fd):
    return Greeter(parent_fd, "marked")


@handler_factory
def marked_raw(parent_fd):
    return RawGreeter(parent_fd)


@handler_factory
def returns_nothing(parent_fd):
    return None


not_callable = 42


def serve(port, max_children):
    """As Quixote 3.8's run() does: a closure for handler_class, max_children a string."""
    def create(parent_fd):
        return Greeter(parent_fd, "closure")

    scgikit.scgi_server.SCGIServer(create, host="127.0.0.1", port=port,
                                   max_children=max_children).serve()


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[1]), sys.argv[2])
