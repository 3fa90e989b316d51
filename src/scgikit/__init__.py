"""scgikit: the SCGI toolkit for Python.

A pre-forking SCGI server for WSGI apps and classic ``scgi`` handlers
(``scgikit serve module:app``), a client (``scgikit request``, ``scgi-test``),
and configurations for nginx, Apache and lighttpd.
"""

__version__ = "0.1.0"
