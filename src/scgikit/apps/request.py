"""What a request means, from the SCGI variables a front end sent: one set of rules for all apps.

Front ends disagree on the CGI variables (docs/frontends.md): nginx sends neither
SCRIPT_NAME nor PATH_INFO, Apache's mod_proxy_scgi sends the whole path as
SCRIPT_NAME, lighttpd sends both; Apache joins two ``Cookie`` lines with ", ".
These pure functions turn the variables into the path, the scheme and the
headers an app expects, the same way for the WSGI environ and the ASGI scope.

``header_pairs`` runs for every ASGI request: it is the C twin in
``scgikit._speedups`` where the accelerator runs (``accelerator.py`` decides), else
``header_pairs_pure``, which stays the reference (the C code calls it for every case
it does not handle itself).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import cast
from urllib.parse import unquote_to_bytes

from ..accelerator import speedups

__all__ = ["request_target", "raw_path", "split_path", "is_https", "merge_cookie",
           "header_pairs", "header_pairs_pure"]

# Variables that are not request headers even though they look like some: the body
# is exactly CONTENT_LENGTH bytes whatever the HTTP framing was (SCGI), and
# CONTENT_TYPE/CONTENT_LENGTH come as their own variables.
_NOT_HEADERS = frozenset({"HTTP_TRANSFER_ENCODING", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"})


def request_target(variables: dict[str, str]) -> str:
    """The request target as the client sent it (path and query), percent-encoded."""
    return variables.get("REQUEST_URI") or variables.get("DOCUMENT_URI") or "/"


def raw_path(variables: dict[str, str]) -> str:
    """The target's path, still percent-encoded, without the query string."""
    path = request_target(variables).partition("?")[0]
    if not path.startswith("/"):
        # absolute-form request target: http://host/path
        path = "/" + path.partition("//")[2].partition("/")[2]
    return path


def split_path(variables: dict[str, str], script_name: str,
               encoding: str = "latin-1") -> tuple[str, str]:
    """(SCRIPT_NAME, PATH_INFO), percent-decoded, the bytes decoded with ``encoding``.

    A front end that sends PATH_INFO (lighttpd) is taken at its word.  Otherwise the
    path comes from REQUEST_URI (else DOCUMENT_URI), minus ``script_name`` (the
    ``--script-name`` the app is mounted under).  WSGI wants latin-1 (PEP 3333),
    ASGI UTF-8.
    """
    if "PATH_INFO" in variables:
        script, path = variables.get("SCRIPT_NAME", ""), variables["PATH_INFO"]
        if encoding != "latin-1":
            script, path = _redecode(script, encoding), _redecode(path, encoding)
        return script, path
    # raw_path(), inline: this runs for every request.
    path = (variables.get("REQUEST_URI") or variables.get("DOCUMENT_URI") or "/").partition("?")[0]
    if path[:1] != "/":
        path = "/" + path.partition("//")[2].partition("/")[2]  # absolute-form target
    if "%" in path:
        path = unquote_to_bytes(path).decode(encoding, "replace" if encoding != "latin-1"
                                             else "strict")
    elif encoding != "latin-1":
        path = _redecode(path, encoding)
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name):]
    return script_name, path


def _redecode(text: str, encoding: str) -> str:
    """Variables are decoded as latin-1 by the protocol core: decode their bytes again."""
    try:
        return text.encode("latin-1").decode(encoding)
    except UnicodeDecodeError:
        return text.encode("latin-1").decode(encoding, "replace")


def is_https(variables: dict[str, str]) -> bool:
    return variables.get("HTTPS") in ("on", "1") or variables.get("REQUEST_SCHEME") == "https"


def merge_cookie(value: str, variables: dict[str, str]) -> str:
    """One Cookie header value from what the front end sent.

    Apache joins two Cookie lines with ", ": undo that, for Apache only (it says so
    in SERVER_SOFTWARE).  RFC 6265 keeps commas out of cookie values, but browsers
    send what scripts set (``document.cookie = "list=a, b"``), and nginx and lighttpd
    pass such a value as it is.  (nginx's two HTTP_COOKIE variables are merged with
    "; " by the protocol core already.)
    """
    if ", " in value and variables.get("SERVER_SOFTWARE", "").startswith("Apache"):
        return value.replace(", ", "; ")
    return value


def header_pairs_pure(variables: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The request headers as ASGI wants them: lower-case names, values as latin-1 bytes.

    ``_speedups.header_pairs`` gives the same result in C (``header_pairs``).
    """
    headers = []
    for name, value in variables.items():
        if name.startswith("HTTP_") and name not in _NOT_HEADERS:
            if name == "HTTP_COOKIE":
                value = merge_cookie(value, variables)
            headers.append((name[5:].replace("_", "-").lower().encode("latin-1"),
                            value.encode("latin-1")))
    content_type = variables.get("CONTENT_TYPE") or variables.get("HTTP_CONTENT_TYPE")
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    length = variables.get("CONTENT_LENGTH", "0")
    if length != "0" or variables.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH"):
        headers.append((b"content-length", length.encode("latin-1")))
    return headers


HeaderPairs = Callable[[dict[str, str]], list[tuple[bytes, bytes]]]


def c_header_pairs(c: ModuleType) -> HeaderPairs:
    """The C ``header_pairs`` of the accelerator ``c``, given the pure pieces it calls."""
    c.setup_headers(header_pairs_pure=header_pairs_pure, merge_cookie=merge_cookie)
    return cast(HeaderPairs, c.header_pairs)


header_pairs: HeaderPairs = c_header_pairs(speedups) if speedups else header_pairs_pure
