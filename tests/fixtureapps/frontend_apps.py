"""What the end-to-end tests serve behind nginx, Apache and lighttpd."""

import json

import client_apps

import scgikit.scgi_server


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("secret detail that must not reach the client")
    if path in ("/status/204", "/status/304"):
        start_response(f"{path[-3:]} No Body", [("X-Status", path[-3:])])
        return []
    if path == "/head":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"hello"]
    return client_apps.app(environ, start_response)


class EnvDump(scgikit.scgi_server.SCGIHandler):
    """A classic handler: answers the variables exactly as the front end sent them."""

    def produce(self, env, bodysize, input, output):
        input.read(bodysize)
        output.write("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n")
        output.write(json.dumps(env))
