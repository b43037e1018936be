"""What a backend must make one code object call: shared by both instrumentation backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, Mapping, Optional, Tuple

__all__ = ["HookSet"]


@dataclass(frozen=True)
class HookSet:
    """Lines to hook and, when `function_hooks`, the enter/return/raise hooks of the function."""

    lines: FrozenSet[int] = frozenset()
    line_hook: Optional[Callable[[int], Any]] = None
    function_hooks: bool = False
    enter_hook: Optional[Callable[[Any], Any]] = None
    return_hook: Optional[Callable[[Any], Any]] = None
    raise_hook: Optional[Callable[[BaseException], Any]] = None
    # line -> `guards.Conjunct`s checked inline before the line hook (bytecode backend only)
    guards: Optional[Mapping[int, Tuple[Any, ...]]] = None
    # line -> the `guards.SkipCount.items` the guard takes one item from at every hook it skips
    guard_skips: Optional[Mapping[int, Any]] = None

    @property
    def empty(self) -> bool:
        return not (self.lines or self.function_hooks)
