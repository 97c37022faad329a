"""Run a function right after a module is imported, without importing it ourselves.

Instrumenting httpx, requests and aiohttp must not import them: an app that
uses none pays ~17 MB and hundreds of modules for nothing.  Modules already
imported are patched at once; the others when (and if) they are imported.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from .. import _patches

if TYPE_CHECKING:
    # Only for the types: at run time importlib.abc pulls in importlib.resources, tempfile,
    # shutil, bz2 and lzma (about 1 MB of RSS) that nothing here needs; the import system only
    # calls the methods below, it never checks these base classes.
    import importlib.abc
    import importlib.machinery

__all__ = ["when_imported"]

_hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
_lock = threading.RLock()
_busy = threading.local()


class _Loader:
    def __init__(self, inner: importlib.abc.Loader, name: str) -> None:
        self._inner = inner
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        with _lock:
            hooks = _hooks.pop(self._name, [])
        for hook in hooks:
            hook(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package...
        return getattr(self._inner, name)


class _Finder:
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks or getattr(_busy, "active", False):
            return None
        _busy.active = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None and spec.loader is not None:
                    spec.loader = cast("importlib.abc.Loader", _Loader(spec.loader, fullname))  # duck-typed, see above
                    return spec
            return None
        finally:
            _busy.active = False


_finder = _Finder()
_KEY = "sys.meta_path finder"


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, else right after its first import."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            hooks = _hooks.setdefault(name, [])
            if hook not in hooks:
                hooks.append(hook)
            if not _patches.active(_KEY):
                sys.meta_path.insert(0, _finder)
                _patches.record(
                    _KEY,
                    "sys.meta_path",
                    "a finder that patches httpx, requests, aiohttp... when (and if) the app imports them",
                    "propagation._import_hooks",
                    _remove_finder,
                )
            return
    hook(module)


def _remove_finder() -> None:
    """Forget the pending hooks and take the finder out of ``sys.meta_path``."""
    with _lock:
        _hooks.clear()
        while _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
