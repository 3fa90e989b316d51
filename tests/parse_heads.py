"""Both implementations of ``parse_head`` for the protocol tests: the pure function and the C one.

``implementation`` (module-scoped, autouse in the modules that import it) makes
``protocol.parse_head`` each of them in turn, as the choice at import would, so both
the tests' own calls and ``RequestParser`` use it.  The C case is skipped, saying
why, where ``scgikit._speedups`` was not built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from scgikit import protocol

try:
    from scgikit import _speedups
except ImportError:
    _speedups = None

NOT_BUILT = ("scgikit._speedups is not built (no C compiler or Python headers): "
             "`python3 setup.py build_ext --inplace` or `pip install -e .` builds it")


def c_parse_head() -> Callable:
    """The C ``parse_head``, ready even when SCGIKIT_PURE=1 kept protocol from setting it up."""
    if _speedups is None:
        pytest.skip(NOT_BUILT)
    _speedups.setup(protocol.parse_head_pure, protocol.DEFAULT_MAX_HEADER_SIZE)
    return _speedups.parse_head


@pytest.fixture(scope="module", params=["pure", "c"], autouse=True)
def implementation(request) -> Iterator[str]:
    chosen = protocol.parse_head_pure if request.param == "pure" else c_parse_head()
    saved = protocol.parse_head
    protocol.parse_head = chosen
    yield request.param
    protocol.parse_head = saved


def nginx_head(body: bytes = b"") -> bytes:
    """A head as nginx sends it with Debian's scgi_params for a browser's GET (27 variables)."""
    pairs = [
        ("CONTENT_LENGTH", str(len(body))), ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/articles/2024/scgi?page=2&sort=new"),
        ("QUERY_STRING", "page=2&sort=new"), ("CONTENT_TYPE", ""),
        ("DOCUMENT_URI", "/articles/2024/scgi"), ("DOCUMENT_ROOT", "/var/www/html"),
        ("SCGI", "1"), ("SERVER_PROTOCOL", "HTTP/1.1"), ("REQUEST_SCHEME", "https"),
        ("HTTPS", "on"), ("REMOTE_ADDR", "203.0.113.57"), ("REMOTE_PORT", "51724"),
        ("SERVER_PORT", "443"), ("SERVER_NAME", "example.com"), ("HTTP_HOST", "example.com"),
        ("HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
                            "Firefox/128.0"),
        ("HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"), ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br"),
        ("HTTP_REFERER", "https://example.com/articles/2024/"),
        ("HTTP_CONNECTION", "keep-alive"),
        ("HTTP_COOKIE", "session=6f1c2a9be34d47a8b0e1; theme=dark; consent=yes"),
        ("HTTP_UPGRADE_INSECURE_REQUESTS", "1"), ("HTTP_SEC_FETCH_DEST", "document"),
        ("HTTP_SEC_FETCH_MODE", "navigate"), ("HTTP_SEC_FETCH_SITE", "same-origin"),
    ]
    block = b"".join(n.encode("latin-1") + b"\0" + v.encode("latin-1") + b"\0" for n, v in pairs)
    return b"%d:%b," % (len(block), block) + body
