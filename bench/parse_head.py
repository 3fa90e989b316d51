"""Microseconds per parse_head call, the pure function and the C accelerator side by side.

    PYTHONPATH=src python3 bench/parse_head.py [--rounds 7] [--number 20000]

The heads are what nginx sends with Debian's scgi_params: a browser's GET (27
variables, 862 bytes) and a small POST (8 variables, 160 bytes).  Each figure is the best of
``--rounds`` timeit rounds of ``--number`` calls, on bytes as a worker receives them: 1,000
heads that differ in REMOTE_PORT (the browser GET) or in their last header's value (the
POST), taken in turn, as a worker's connections follow one another.  (The C parser reuses
the strings of the names, and of a name's value when it is the last one: a repeated head
would overstate it.)
"""

from __future__ import annotations

import argparse
import itertools
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


def best_us(parse: object, heads: list[bytes], rounds: int, number: int) -> float:
    turns = itertools.cycle(heads)
    timer = timeit.Timer("parse(next(turns), 65536)",
                         globals={"parse": parse, "turns": turns, "next": next})
    return min(timer.repeat(rounds, number)) / number * 1e6


def varied(pairs: list[tuple[str, str]], name: str, body: bytes = b"") -> list[bytes]:
    """1,000 heads of ``pairs`` whose ``name`` has a different number each."""
    return [head([(n, str(50000 + i) if n == name else v) for n, v in pairs], body)
            for i in range(1000)]


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
        f"browser GET, {len(BROWSER_GET)} variables": varied(BROWSER_GET, "REMOTE_PORT"),
        f"small POST, {len(SMALL_POST)} variables": varied(SMALL_POST, "HTTP_HOST", b"hello"),
    }
    print(f"{'head':<30} {'bytes':>6} {'pure µs':>9} {'C µs':>7} {'pure / C':>9}")
    for name, heads in cases.items():
        for data in heads[:3]:
            assert (_speedups is None
                    or _speedups.parse_head(data) == protocol.parse_head_pure(data))
        pure = best_us(protocol.parse_head_pure, heads, args.rounds, args.number)
        size = len(heads[0])
        if _speedups is None:
            print(f"{name:<30} {size:>6} {pure:>9.2f} {'-':>7} {'-':>9}")
            continue
        c = best_us(_speedups.parse_head, heads, args.rounds, args.number)
        print(f"{name:<30} {size:>6} {pure:>9.2f} {c:>7.2f} {pure / c:>8.1f}x")


if __name__ == "__main__":
    main()
