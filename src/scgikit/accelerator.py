"""Whether scgikit runs its C accelerator: decided here, once per process, for every module.

``scgikit._speedups`` is built at install time where there is a C compiler and
Python's headers (``setup.py``), and ``SCGIKIT_PURE=1`` in the environment leaves
it unused: the variable is read at import, not through the ``Config``, because
the choice is made before any option is read, and only tests and benchmarks need
the switch.  ``speedups`` is the C module, or None.

A module with a C twin takes it from ``speedups`` when it is not None, and gives
it the pure pieces it hands its unusual cases to.  Each C function does the
common case itself and hands everything else, untouched, to its pure twin, so
the two give the same results; the test suite runs whole on both paths.

``socket_speedups`` says more: whether the C code may also make, read and close
the server's socket objects itself, which relies on CPython's socket object
layout.  It is checked once, on a real socket, the first time it is asked (not
at import: the protocol core imports this module and stays free of sockets).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["ACCELERATED", "socket_speedups", "speedups"]


def _load() -> ModuleType | None:
    if os.environ.get("SCGIKIT_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:  # not built: no compiler or no headers at install time
        return None
    return _speedups


#: The C accelerator, or None: not built, or refused by SCGIKIT_PURE=1.
speedups: ModuleType | None = _load()
#: True when the C accelerator runs.
ACCELERATED = speedups is not None
_sockets: list[ModuleType | None] = []  # the answer of socket_speedups, once asked


def socket_speedups() -> ModuleType | None:
    """The C accelerator, where it may also handle the server's socket objects; else None.

    Its accept, receive, close and accept loops make and read ``_socket.socket``
    objects field by field; ``socket_layout_matches`` checks those fields against
    a real socket of this interpreter before any of them is used.
    """
    if not _sockets:
        _sockets.append(speedups if speedups is not None and _layout_matches(speedups)
                        else None)
    return _sockets[0]


def _layout_matches(module: ModuleType) -> bool:
    import _socket
    import socket

    ours, theirs = socket.socketpair()
    try:
        sample = _socket.socket(ours.family, ours.type, 0, ours.detach())
        try:
            return bool(module.socket_layout_matches(sample))
        finally:
            sample.close()
    finally:
        theirs.close()
