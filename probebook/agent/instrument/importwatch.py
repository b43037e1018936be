"""Pending probes resolved the moment their module has been imported, in the importing thread,
before any of its functions can run (the housekeeping thread's next look would be too late for a
worker that imports the app and serves its first requests within a few milliseconds).

While some probe is pending, `ImportWatch` sits first on ``sys.meta_path``: it asks the finders after
it for the spec (it finds nothing itself), and for a module loaded from a ``.py`` file it wraps that
spec's own loader's ``exec_module`` (the loader object, its class and ``__loader__`` stay what they
were) so that `on_loaded(module)` runs right after the module's code. Nothing else about an import
changes; with nothing pending it is removed from ``sys.meta_path``.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Any, Callable, Optional

__all__ = ["ImportWatch"]

_FILE_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)


def _from_file(spec: Any, loader: Any) -> bool:
    """A module whose code comes from a file: the standard file loaders, or another finder's loader for a
    `.py` file (ddtrace's module watchdog, for one, chains the file loader inside its own, and since
    ddtrace 4 sets its own `exec_module` on the instance: that is wrapped like any other)."""
    if loader is None or getattr(getattr(loader, "exec_module", None), "_probebook_watch", False):
        return False  # none, or wrapped by us already (another tool's own wrapper is wrapped in turn)
    if isinstance(loader, _FILE_LOADERS):
        return True
    origin = getattr(spec, "origin", None)
    return bool(getattr(spec, "has_location", False) and isinstance(origin, str) and origin.endswith(".py")
                and callable(getattr(loader, "exec_module", None)))


class ImportWatch:
    def __init__(self, on_loaded: Callable[[ModuleType], None]) -> None:
        self._on_loaded = on_loaded
        self._local = threading.local()  # this thread is asking the other finders: do not recurse

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[Any]:
        if getattr(self._local, "busy", False):
            return None
        self._local.busy = True
        try:
            spec = None
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None) if finder is not self else None
                if find is not None:
                    spec = find(name, path, target)
                    if spec is not None:
                        break
        finally:
            self._local.busy = False
        loader = getattr(spec, "loader", None)
        if _from_file(spec, loader):
            run = loader.exec_module
            on_loaded, local = self._on_loaded, self._local

            def exec_module(module: ModuleType) -> None:
                run(module)
                if getattr(local, "inside", False):  # an import made by on_loaded itself (the backend's modules)
                    return
                local.inside = True
                try:
                    on_loaded(module)
                except Exception:  # noqa: BLE001 - an import must never fail because of a probe
                    pass
                finally:
                    local.inside = False

            exec_module._probebook_watch = True  # type: ignore[attr-defined]
            try:
                loader.exec_module = exec_module  # type: ignore[method-assign]
            except (AttributeError, TypeError):  # a loader with __slots__: the housekeeping tick resolves it
                pass
        return spec

    def __repr__(self) -> str:
        return "<probebook ImportWatch: resolves pending probes when their module is imported>"
