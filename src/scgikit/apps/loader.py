"""Find the app a TARGET names, and tell what kind of app it is.

    module:attribute        a WSGI callable or an SCGIHandler subclass
    module:factory()        called (literal arguments allowed) to make one
    path/to/file.py:attr    loaded from a file; its folder goes on sys.path
    module                  looks for ``application``, then ``app``

Loading happens in each worker after the fork, so a reload imports afresh.
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

__all__ = ["AppImportError", "load_target", "app_kind"]


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
            raise AppImportError(f"{target!r}: no module named {exc.name!r}") from exc
        raise


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


def app_kind(obj: Any) -> str:
    """``"handler"`` for an SCGIHandler subclass, ``"asgi"`` for an ASGI 3 app (an async
    callable), ``"wsgi"`` for any other callable."""
    from .handler import SCGIHandler

    if inspect.isclass(obj) and issubclass(obj, SCGIHandler):
        return "handler"
    if _is_asgi(obj):
        return "asgi"
    if inspect.isclass(obj):
        raise AppImportError(
            f"{obj!r} is a class but not a subclass of scgikit.scgi_server.SCGIHandler "
            "(an ASGI 2 class-style app is not supported: ASGI 3 apps are async callables)"
        )
    if not callable(obj):
        raise AppImportError(f"{obj!r} is neither a WSGI callable nor an SCGIHandler subclass")
    return "wsgi"


def _is_asgi(obj: Any) -> bool:
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return inspect.iscoroutinefunction(obj)
    call = None if inspect.isclass(obj) else inspect.getattr_static(type(obj), "__call__", None)
    return inspect.iscoroutinefunction(call)
