"""Instrumented code objects swapped into functions: the backend on Python <= 3.11, and the path of new
calls on >= 3.12 (`hybrid`).

For every code object that carries probes we keep the original and build an instrumented copy
(`inject.instrument_code`). Nested code objects live in their parent's constants, so a change
rebuilds the chain up to the outermost function and swaps, for each level, every function object
whose ``__code__`` is the old copy. Removing the last probe swaps the original back, so
``func.__code__ is original`` again; nothing is written to module globals.

Frames already running keep the code they started with: a probe placed while a function runs
takes effect from its next call (on >= 3.12 `hybrid` reaches running frames through `sys.monitoring`).
"""

from __future__ import annotations

import gc
import sys
import threading
from types import CodeType, FunctionType
from typing import Any, Dict, List, Optional

from ..capture.safe_access import class_namespace, module_namespace

from .hookset import HookSet
from .inject import instrument_code

__all__ = ["CodeSwapBackend"]


class _Node:
    __slots__ = ("original", "parent", "effective", "hooks")

    def __init__(self, original: CodeType, parent: Optional["_Node"]) -> None:
        self.original = original
        self.parent = parent
        self.effective = original
        self.hooks: Optional[HookSet] = None


class CodeSwapBackend:
    """Keeps function objects pointing at the right instrumented code."""

    name = "bytecode-injection"
    affects_running_frames = False

    def __init__(self) -> None:
        self._nodes: Dict[int, _Node] = {}
        self._by_effective: Dict[int, _Node] = {}
        self._lock = threading.RLock()

    def original_of(self, code: CodeType) -> CodeType:
        """The original of an instrumented copy we made (or `code` itself)."""
        node = self._by_effective.get(id(code))
        return node.original if node is not None and node.effective is code else code

    def update(self, code: CodeType, hooks: Optional[HookSet], parents: List[CodeType]) -> None:
        """Make `code` carry exactly `hooks` (None: none). `parents`: outermost first."""
        with self._lock:
            chain: List[_Node] = []
            parent_node: Optional[_Node] = None
            for c in parents + [code]:
                node = self._nodes.get(id(c))
                if node is None:
                    node = _Node(c, parent_node)
                    self._nodes[id(c)] = node
                chain.append(node)
                parent_node = node
            chain[-1].hooks = hooks if hooks and (hooks.lines or hooks.function_hooks) else None
            for node in reversed(chain):
                self._rebuild(node)
            self._forget_idle(chain)

    def _rebuild(self, node: _Node) -> None:
        base = node.original
        children = {id(n.original): n for n in self._nodes.values() if n.parent is node}
        if children:
            consts = tuple(
                children[id(c)].effective if isinstance(c, CodeType) and id(c) in children else c
                for c in base.co_consts
            )
            if any(a is not b for a, b in zip(consts, base.co_consts)):
                base = base.replace(co_consts=consts)
        new = instrument_code(base, node.hooks) if node.hooks is not None else base
        if new is node.effective:
            return
        old = node.effective
        node.effective = new
        self._by_effective.pop(id(old), None)
        if new is not node.original:
            self._by_effective[id(new)] = node
        _swap_functions(old, new)

    def _forget_idle(self, chain: List[_Node]) -> None:
        for node in reversed(chain):
            has_children = any(n.parent is node for n in self._nodes.values())
            if node.hooks is None and not has_children and node.effective is node.original:
                self._nodes.pop(id(node.original), None)

    def active_codes(self) -> int:
        with self._lock:
            return sum(1 for n in self._nodes.values() if n.hooks is not None)

    def release(self) -> bool:
        """Nothing of the interpreter is held (code swapped back is the original): kept for the next agent."""
        return False


def _swap_functions(old: CodeType, new: CodeType) -> None:
    found = [ref for ref in gc.get_referrers(old) if type(ref) is FunctionType]
    if gc.get_freeze_count():  # gc.freeze() (gunicorn --preload setups): get_referrers misses those objects
        found += _functions_in_namespaces(old)
    for ref in found:
        if ref.__code__ is old:
            try:
                ref.__code__ = new
            except ValueError:  # free variables changed shape: cannot happen for our copies
                continue


def _functions_in_namespaces(code: CodeType) -> List[FunctionType]:
    """The functions holding `code` that modules and their classes name (methods, static and class methods,
    one level of nested classes), read from their namespaces without user code: what `gc.get_referrers`
    cannot see once the process froze its objects with `gc.freeze()`."""
    out: List[FunctionType] = []
    seen: set = set()

    def visit(values: Any, depth: int) -> None:
        for value in values:
            tv = type(value)
            if tv is staticmethod or tv is classmethod:
                value, tv = value.__func__, type(value.__func__)
            if tv is FunctionType:
                if value.__code__ is code and id(value) not in seen:
                    seen.add(id(value))
                    out.append(value)
            elif depth < 2 and issubclass(tv, type):
                ns = class_namespace(value)
                if ns is not None:
                    visit(list(ns.values()), depth + 1)

    for module in list(sys.modules.values()):
        ns = module_namespace(module)
        if ns is not None:
            visit(list(ns.values()), 0)
    return out
