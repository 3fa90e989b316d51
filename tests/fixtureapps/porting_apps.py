"""A WSGI app that answers with what it was given, for the porting guide's side-by-side
tests: scgikit, flup and uWSGI serve it and get the same requests."""

import json

KEYS = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "CONTENT_LENGTH",
        "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_COOKIE", "REMOTE_ADDR",
        "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")


def environ(environ, start_response):
    seen = {key: environ.get(key) for key in KEYS}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    seen["body"] = environ["wsgi.input"].read(length).decode() if length else ""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
