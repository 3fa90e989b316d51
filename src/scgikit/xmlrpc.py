"""XML-RPC over SCGI: ``xmlrpc.client`` on ``scgikit.client``.

rtorrent (and other programs) serve XML-RPC over SCGI rather than HTTP:

    >>> from scgikit.xmlrpc import ServerProxy
    >>> rtorrent = ServerProxy("unix:/run/rtorrent/rpc.sock")
    >>> rtorrent.system.client_version()

``SCGITransport`` plugs into any ``xmlrpc.client.ServerProxy``; the host part of
the proxy's URL is ignored and the request goes to the transport's address.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from . import __version__, client
from .addresses import AddressLike

__all__ = ["SCGITransport", "ServerProxy"]


class SCGITransport(xmlrpc.client.Transport):
    """An ``xmlrpc.client`` transport that sends each call as one SCGI request."""

    user_agent = f"scgikit/{__version__} (xmlrpc)"

    def __init__(self, address: AddressLike, timeout: float | None = client.DEFAULT_TIMEOUT,
                 use_builtin_types: bool = False) -> None:
        super().__init__(use_builtin_types=use_builtin_types)
        self.address = address
        self.timeout = timeout

    def request(self, host: Any, handler: str, request_body: Any,
                verbose: bool = False) -> tuple[Any, ...]:
        answer = client.request(
            self.address, handler or "/RPC2", "POST",
            headers=[("Content-Type", "text/xml"), ("User-Agent", self.user_agent)],
            body=bytes(request_body), timeout=self.timeout,
        )
        if verbose:
            print(f"scgikit.xmlrpc: {handler} -> {answer.status} ({len(answer.body)} bytes)")
        if answer.status != 200:
            raise xmlrpc.client.ProtocolError(
                f"{self.address}{handler}", answer.status, answer.reason, dict(answer.headers)
            )
        parser, unmarshaller = self.getparser()
        parser.feed(answer.body)
        parser.close()
        result: tuple[Any, ...] = unmarshaller.close()
        return result


def ServerProxy(address: AddressLike, path: str = "/RPC2",  # noqa: N802 - mirrors xmlrpc.client
                timeout: float | None = client.DEFAULT_TIMEOUT,
                **kwargs: Any) -> xmlrpc.client.ServerProxy:
    """An ``xmlrpc.client.ServerProxy`` whose calls go over SCGI to ``address``."""
    return xmlrpc.client.ServerProxy(
        f"http://scgi{path}", transport=SCGITransport(address, timeout), **kwargs
    )
