"""Reading the pages of a server's ``--stats`` listener: the metrics, and the health checks."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from scgi_raw import connect


def http_get(address: str, path: str = "/metrics", method: str = "GET",
             ) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.0 exchange: (status, headers, body)."""
    with connect(address, timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def health(address: str, path: str = "/healthz") -> tuple[int, dict[str, object]]:
    """A health page's status and JSON body."""
    status, headers, body = http_get(address, path)
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    return status, json.loads(body)


def samples(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """One scrape of /metrics: each sample's value by its name and labels."""
    status, _, body = http_get(address)
    assert status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def exits(address: str) -> dict[str, float]:
    """scgikit_worker_exits_total by reason."""
    return {dict(labels)["reason"]: value for (name, labels), value in samples(address).items()
            if name == "scgikit_worker_exits_total"}
