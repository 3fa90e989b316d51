"""Find the app a TARGET names, and tell what kind of app it is.

    module:attribute        a WSGI callable, an ASGI app, an SCGIHandler subclass or a
                            handler factory (``--interface`` says which when the app
                            cannot: ``app_kind``)
    module:factory()        called (literal arguments allowed) to make one
    path/to/file.py:attr    loaded from a file; its folder goes on sys.path
    module                  looks for ``application``, then ``app``

Loading happens in each worker after the fork, so a reload imports afresh; with
``--preload`` the master loads the app once, before the fork, by the same code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["AppImportError", "load_target", "app_kind", "make_handler"]


class AppImportError(Exception):
    """The TARGET cannot be imported or is not an app scgikit can serve."""


def load_target(target: str) -> Any:
    """Import ``target`` and return the object it names."""
    module_part, sep, attribute = target.partition(":")
    if not module_part:
        raise AppImportError(f"{target!r}: expected MODULE:ATTRIBUTE")
    module = _import(module_part, target)
    if not sep:
        for name in ("application", "app"):
            if hasattr(module, name):
                return getattr(module, name)
        raise AppImportError(f"{target!r}: module has no 'application' or 'app'; name one")
    return _resolve(module, attribute, target)


def _import(name: str, target: str) -> ModuleType:
    if name.endswith(".py") or os.sep in name:
        return _import_file(name, target)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise AppImportError(f"{target!r}: no module named {exc.name!r}"
                                 f"{_attribute_hint(name, target)}") from exc
        raise


def _attribute_hint(name: str, target: str) -> str:
    """'good.app' where 'good' is a module: the dot was meant as MODULE:ATTRIBUTE."""
    parent, dot, last = name.rpartition(".")
    if not dot or ":" in target:
        return ""
    try:
        found = importlib.util.find_spec(parent) is not None
    except (ImportError, ValueError):
        found = False
    return f"; TARGET is MODULE:ATTRIBUTE: did you mean {parent}:{last}?" if found else ""


def _import_file(path: str, target: str) -> ModuleType:
    if not os.path.isfile(path):
        raise AppImportError(f"{target!r}: no such file {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppImportError(f"{target!r}: cannot load {path!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _resolve(module: ModuleType, expression: str, target: str) -> Any:
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise AppImportError(f"{target!r}: {expression!r} is not an attribute name") from None
    call_args: list[Any] | None = None
    call_kwargs: dict[str, Any] = {}
    if isinstance(node, ast.Call):
        try:
            call_args = [ast.literal_eval(arg) for arg in node.args]
            call_kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise AppImportError(f"{target!r}: factory arguments must be literals") from None
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppImportError(f"{target!r}: {expression!r} is not an attribute name")
    names.append(node.id)
    obj: Any = module
    for name in reversed(names):
        if not hasattr(obj, name):
            raise AppImportError(f"{target!r}: module {module.__name__!r} has no {name!r}")
        obj = getattr(obj, name)
    if call_args is not None:
        obj = obj(*call_args, **call_kwargs)
    return obj


def app_kind(obj: Any, interface: str = "auto") -> str:
    """What kind of app ``obj`` is: ``"handler"``, ``"asgi"`` or ``"wsgi"``.

    ``interface`` is ``--interface``.  With ``auto`` the kind is told from the app:
    a subclass of SCGIHandler or a function marked ``@handler_factory`` is a classic
    handler, an async callable (ASGI 3) is ASGI, any other callable is WSGI, unless its
    signature cannot take ``(environ, start_response)``.  Named explicitly, the kind
    is taken as given, for any callable, unless the app says otherwise of itself (a
    handler class served as WSGI, say).  Either way, what would fail on every request
    is refused here, with what the app is, never served.
    """
    evident = _evident_kind(obj)
    if interface != "auto":
        return _named_kind(obj, interface, evident)
    if evident:
        return evident
    if inspect.isclass(obj):
        raise AppImportError(
            f"{obj!r} is a class but not a subclass of scgikit.scgi_server.SCGIHandler "
            "(an ASGI 2 class-style app is not supported: ASGI 3 apps are async callables; "
            "a class whose instances are classic handlers: --interface handler)"
        )
    if not callable(obj):
        raise AppImportError(f"{obj!r} is neither a WSGI callable nor an SCGIHandler subclass")
    _check_wsgi_call(obj, "")
    return "wsgi"


def _check_wsgi_call(obj: Any, interface: str) -> None:
    """Refuse a callable whose signature cannot take a WSGI call: served as one, every
    request would fail.  A handler factory of one argument (``parent_fd``) is the case
    met in practice."""
    try:
        inspect.signature(obj).bind(None, None)
    except TypeError:
        raise AppImportError(
            f"{interface}{_name(obj)} cannot be called as a WSGI app, with (environ, "
            "start_response); a function that takes parent_fd and returns a handler is "
            "served with --interface handler, or marked @handler_factory") from None
    except ValueError:
        pass  # no signature to read (a callable written in C): taken at its word


_KIND_NAMES = {"handler": "a classic handler", "asgi": "an ASGI app (an async callable)",
               "wsgi": "a WSGI app"}


def _evident_kind(obj: Any) -> str | None:
    """The kind an app declares by what it is, or None when only a guess would say."""
    from .handler import INTERFACE_MARK, SCGIHandler

    if inspect.isclass(obj) and issubclass(obj, SCGIHandler):
        return "handler"
    if getattr(obj, INTERFACE_MARK, None) == "handler":
        return "handler"
    if _is_asgi(obj):
        return "asgi"
    return None


def _named_kind(obj: Any, interface: str, evident: str | None) -> str:
    if not callable(obj):
        raise AppImportError(
            f"--interface {interface}: {_name(obj)} is not callable; {_EXPECTED[interface]}")
    if evident is not None and evident != interface:
        raise AppImportError(
            f"--interface {interface}: {_name(obj)} is {_KIND_NAMES[evident]}, not "
            f"{_KIND_NAMES[interface]}; serve it with --interface {evident} (or auto)")
    if interface == "wsgi":
        _check_wsgi_call(obj, "--interface wsgi: ")
    return interface


_EXPECTED = {
    "handler": "a classic handler is an SCGIHandler subclass or a function that takes "
               "parent_fd and returns a handler",
    "wsgi": "a WSGI app is a callable taking (environ, start_response)",
    "asgi": "an ASGI app is an async callable taking (scope, receive, send)",
}


def make_handler(factory: Any) -> Any:
    """The handler a worker serves with: ``factory(None)``, checked.

    ``factory`` is what the classic SCGIServer takes as ``handler_class``: an
    SCGIHandler subclass, or any callable that takes ``parent_fd`` and returns a
    handler.  The original passed the child's end of a pipe to its master; scgikit's
    workers have none, so they pass None.  A handler has ``produce`` (called per
    request) or ``handle_connection`` (given the connection itself).
    """
    handler = factory(None)
    if not any(callable(getattr(handler, name, None))
               for name in ("produce", "handle_connection")):
        raise AppImportError(
            f"{_name(factory)} was served as a classic handler, but {_name(factory)}(None) "
            f"returned {handler!r}, which has neither produce() nor handle_connection()")
    return handler


def _name(obj: Any) -> str:
    """A function or a class by its dotted name (its repr has an address); else its repr."""
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    return f"{module}.{qualname}" if isinstance(qualname, str) and module else repr(obj)


def _is_asgi(obj: Any) -> bool:
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return inspect.iscoroutinefunction(obj)
    call = None if inspect.isclass(obj) else inspect.getattr_static(type(obj), "__call__", None)
    return inspect.iscoroutinefunction(call)
