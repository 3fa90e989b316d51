"""The CGI variables nginx sends over SCGI for an HTTP request, built without nginx.

The client (``scgikit request``) and the development gateway both speak for a
front end, so both build their variables here, the way nginx does with its
stock ``scgi_params`` and ``scgi_pass_request_headers on``:

    REQUEST_METHOD REQUEST_URI QUERY_STRING CONTENT_TYPE DOCUMENT_URI DOCUMENT_ROOT
    SCGI SERVER_PROTOCOL REQUEST_SCHEME HTTPS REMOTE_ADDR REMOTE_PORT SERVER_PORT
    SERVER_NAME, then HTTP_<NAME> for each request header.

CONTENT_LENGTH is not set here: ``protocol.encode_request`` always writes it
first, from the body's real size.  Like nginx, the request's own Content-Type
and Content-Length headers also go out as HTTP_CONTENT_TYPE and
HTTP_CONTENT_LENGTH (the server keeps them out of the WSGI environ).

HTTP_HOST is the Host header as the client sent it, as with nginx.org's
``scgi_params``.  Debian's ``scgi_params`` (nginx 1.22 and later packages)
adds ``scgi_param HTTP_HOST $host``, which drops the port; see docs/frontends.md.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_to_bytes

__all__ = ["http_variables", "header_variable"]


def header_variable(name: str) -> str | None:
    """``X-Forwarded-For`` -> ``HTTP_X_FORWARDED_FOR``; None for a name nginx would ignore."""
    # nginx (underscores_in_headers off) ignores header names with anything but
    # letters, digits and '-'.
    if not name or not all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        return None
    return "HTTP_" + name.upper().replace("-", "_")


def document_uri(path: str) -> str:
    """nginx's ``$document_uri``: the path percent-decoded and normalised (``/a/../b``: ``/b``)."""
    decoded = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    normal = posixpath.normpath(decoded) if decoded else "/"
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if decoded.endswith("/") and normal != "/":
        normal += "/"
    return normal


def http_variables(
    method: str = "GET",
    uri: str = "/",
    headers: Iterable[tuple[str, str]] = (),
    *,
    server_name: str = "localhost",
    server_port: int = 80,
    remote_addr: str = "127.0.0.1",
    remote_port: int = 0,
    scheme: str = "http",
    protocol: str = "HTTP/1.1",
    document_root: str = "/usr/share/nginx/html",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables nginx would send for this request (without CONTENT_LENGTH).

    Repeated headers are joined as nginx 1.23+ joins them: ``Cookie`` with
    ``"; "``, the others with ``", "``.  ``extra`` adds or overrides variables.
    """
    path, _, query = uri.partition("?")
    merged: dict[str, str] = {}
    content_type = ""
    for name, value in headers:
        variable = header_variable(name)
        if variable is None:
            continue
        if variable == "HTTP_CONTENT_TYPE":
            content_type = value
        if variable in merged:
            merged[variable] += ("; " if variable == "HTTP_COOKIE" else ", ") + value
        else:
            merged[variable] = value
    environ = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "DOCUMENT_URI": document_uri(path or "/"),
        "DOCUMENT_ROOT": document_root,
        "SCGI": "1",
        "SERVER_PROTOCOL": protocol,
        "REQUEST_SCHEME": scheme,
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": str(remote_port),
        "SERVER_PORT": str(server_port),
        "SERVER_NAME": server_name,
    }
    if scheme == "https":
        environ["HTTPS"] = "on"
    environ.update(merged)
    if extra:
        environ.update(extra)
    return environ
