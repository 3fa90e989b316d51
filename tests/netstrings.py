"""Netstrings and SCGI heads for tests, built without validation (so they can be malformed)."""


def netstring(data: bytes) -> bytes:
    return b"%d:%b," % (len(data), data)


def scgi_head(pairs: list[tuple[str, str]]) -> bytes:
    return netstring(b"".join(n.encode("latin-1") + b"\0" + v.encode("latin-1") + b"\0"
                              for n, v in pairs))
