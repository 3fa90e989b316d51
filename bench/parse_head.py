"""Microseconds per parse_head call, the pure function and the C accelerator side by side.

    PYTHONPATH=src python3 bench/parse_head.py [--rounds 7] [--number 20000]

The heads are what nginx sends with Debian's scgi_params: a browser's GET (27
variables, 862 bytes) and a small POST (8 variables, 160 bytes).  Each figure is the best of
``--rounds`` timeit rounds of ``--number`` calls, on bytes as a worker receives them.
"""

from __future__ import annotations

import argparse
import timeit

from scgikit import protocol

BROWSER_GET = [
    ("CONTENT_LENGTH", "0"), ("REQUEST_METHOD", "GET"),
    ("REQUEST_URI", "/articles/2024/scgi?page=2&sort=new"), ("QUERY_STRING", "page=2&sort=new"),
    ("CONTENT_TYPE", ""), ("DOCUMENT_URI", "/articles/2024/scgi"),
    ("DOCUMENT_ROOT", "/var/www/html"), ("SCGI", "1"), ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "https"), ("HTTPS", "on"), ("REMOTE_ADDR", "203.0.113.57"),
    ("REMOTE_PORT", "51724"), ("SERVER_PORT", "443"), ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    ("HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"), ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br"),
    ("HTTP_REFERER", "https://example.com/articles/2024/"), ("HTTP_CONNECTION", "keep-alive"),
    ("HTTP_COOKIE", "session=6f1c2a9be34d47a8b0e1; theme=dark; consent=yes"),
    ("HTTP_UPGRADE_INSECURE_REQUESTS", "1"), ("HTTP_SEC_FETCH_DEST", "document"),
    ("HTTP_SEC_FETCH_MODE", "navigate"), ("HTTP_SEC_FETCH_SITE", "same-origin"),
]
SMALL_POST = [
    ("CONTENT_LENGTH", "5"), ("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/api"),
    ("QUERY_STRING", ""), ("CONTENT_TYPE", "application/json"), ("SCGI", "1"),
    ("SERVER_PROTOCOL", "HTTP/1.1"), ("HTTP_HOST", "localhost"),
]


def head(pairs: list[tuple[str, str]], body: bytes = b"") -> bytes:
    block = b"".join(n.encode("latin-1") + b"\0" + v.encode("latin-1") + b"\0" for n, v in pairs)
    return b"%d:%b," % (len(block), block) + body


def best_us(parse: object, data: bytes, rounds: int, number: int) -> float:
    timer = timeit.Timer("parse(data, 65536)", globals={"parse": parse, "data": data})
    return min(timer.repeat(rounds, number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    try:
        from scgikit import _speedups
    except ImportError:
        _speedups = None
        print("scgikit._speedups is not built: pure Python only")
    else:
        _speedups.setup(protocol.parse_head_pure, protocol.DEFAULT_MAX_HEADER_SIZE)
    cases = {
        f"browser GET, {len(BROWSER_GET)} variables": head(BROWSER_GET),
        f"small POST, {len(SMALL_POST)} variables": head(SMALL_POST, b"hello"),
    }
    print(f"{'head':<30} {'bytes':>6} {'pure µs':>9} {'C µs':>7} {'pure / C':>9}")
    for name, data in cases.items():
        assert _speedups is None or _speedups.parse_head(data) == protocol.parse_head_pure(data)
        pure = best_us(protocol.parse_head_pure, data, args.rounds, args.number)
        if _speedups is None:
            print(f"{name:<30} {len(data):>6} {pure:>9.2f} {'-':>7} {'-':>9}")
            continue
        c = best_us(_speedups.parse_head, data, args.rounds, args.number)
        print(f"{name:<30} {len(data):>6} {pure:>9.2f} {c:>7.2f} {pure / c:>8.1f}x")


if __name__ == "__main__":
    main()
