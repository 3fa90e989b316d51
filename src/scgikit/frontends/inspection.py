"""``scgikit check --front-end FILE``: which front end FILE configures, and where it does not
fit the server's settings.

The check command reads the file and builds the ``Server``; ``inspect`` tells the front end
by the file's content (``readers.kind_of``), reads it as that front end would
(``readers``), and applies its rules (``nginx_rules``, ``apache_rules``,
``lighttpd_rules``).
"""

from __future__ import annotations

from . import apache_rules, lighttpd_rules, nginx_rules
from .findings import Finding, Server
from .readers import ReadError, kind_of, read_apache, read_lighttpd, read_nginx

__all__ = ["Finding", "ReadError", "Server", "inspect"]

_NAMES = {"nginx": "nginx", "apache": "Apache", "lighttpd": "lighttpd"}


def inspect(path: str, text: str, server: Server) -> tuple[str, list[Finding]]:
    """(the front end's name, the findings) of the configuration ``text``, read from
    ``path``; ReadError when it is no front end's configuration of an SCGI backend, or
    one that front end would not read."""
    kinds = kind_of(text)
    if len(kinds) != 1:
        found = " and ".join(_NAMES[kind] for kind in kinds) or "none"
        raise ReadError(f"cannot tell which front end this configures (found: {found}): "
                        "nginx's has scgi_pass, Apache's ProxyPass to scgi:// or SCGIMount, "
                        "lighttpd's scgi.server")
    kind = kinds[0]
    if kind == "nginx":
        return _NAMES[kind], nginx_rules.inspect(read_nginx(path), server)
    if kind == "apache":
        return _NAMES[kind], apache_rules.inspect(read_apache(text), server)
    return _NAMES[kind], lighttpd_rules.inspect(read_lighttpd(text), server)
