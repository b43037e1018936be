"""Build an instrumented copy of a code object (every Python 3.9-3.13, with the `bytecode` package).

The copy calls our hooks and is otherwise the original: same line numbers, same constants and
names, same exception table for the host's own handlers. The caller swaps it into function
objects and swaps the original back on removal (see `codeswap`).

Injected calls are stack-neutral (`hook(arg)` then `POP_TOP`) and carry the line number of the
place they stand, so tracebacks and `f_lineno` are unchanged. Hooks must never raise.

- line hooks: `line_hook(line)` before the first instruction of each chosen line;
- function hooks: `enter_hook(None)` after the prologue, `return_hook(None)` before every
  `RETURN_VALUE`, and `raise_hook(exc)` in a handler that covers every instruction not already
  covered by one of the host's handlers, then re-raises (so tracebacks are not extended).
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any, Callable, List, Optional

__all__ = ["instrument_code"]

import bytecode as _bc
from bytecode import Bytecode, ConcreteBytecode, ConcreteInstr, Instr, Label

from .hookset import HookSet
from .locate import PROLOGUE_OPS

PY313 = sys.version_info >= (3, 13)
PY312 = sys.version_info >= (3, 12)
PY311 = sys.version_info >= (3, 11)
PY310 = sys.version_info >= (3, 10)
_RETURNS = ("RETURN_VALUE", "RETURN_CONST")


def _push_call(fn: Any, arg: List[Instr], **kw: Any) -> List[Instr]:
    """Push `fn(*arg)`'s callable and its arguments (`arg`: the instructions that push one argument)."""
    if PY313:  # callable, then NULL for "no self"
        return [Instr("LOAD_CONST", fn, **kw), Instr("PUSH_NULL", **kw), *arg, Instr("CALL", 1, **kw)]
    if PY312:
        return [Instr("PUSH_NULL", **kw), Instr("LOAD_CONST", fn, **kw), *arg, Instr("CALL", 1, **kw)]
    if PY311:
        return [Instr("PUSH_NULL", **kw), Instr("LOAD_CONST", fn, **kw), *arg, Instr("PRECALL", 1, **kw),
                Instr("CALL", 1, **kw)]
    return [Instr("LOAD_CONST", fn, **kw), *arg, Instr("CALL_FUNCTION", 1, **kw)]



def _call(fn: Any, arg: Any, lineno: Optional[int]) -> List[Instr]:
    """`fn(arg)` with its result dropped; leaves the value stack as it found it."""
    kw = {"lineno": lineno} if lineno is not None else {}
    return _push_call(fn, [Instr("LOAD_CONST", arg, **kw)], **kw) + [Instr("POP_TOP", **kw)]


_JUMP_IF_FALSE = "POP_JUMP_FORWARD_IF_FALSE" if PY311 and not PY312 else "POP_JUMP_IF_FALSE"
# 3.13's conditional jumps take a bool only: its COMPARE_OP says so with the _CAST forms
_COMPARE = {op: getattr(_bc.Compare, name + ("_CAST" if PY313 else "")) for op, name in
            (("<", "LT"), ("<=", "LE"), (">", "GT"), (">=", "GE"), ("==", "EQ"), ("!=", "NE"))}


def _counted(skips: Any, lineno: int, tails: List[Any]) -> List[Any]:
    """Take one item from `skips` (an `itertools.repeat(None, n)`, see `SkipCount`): a C-level next with
    no call frame, no allocation and no eval-breaker check, so no other thread runs in between."""
    end = Label()
    load = [Instr("LOAD_CONST", skips, lineno=lineno), Instr("FOR_ITER", end, lineno=lineno)]
    if not PY312:
        return load + [Instr("POP_TOP", lineno=lineno), Instr("POP_TOP", lineno=lineno), end]
    # 3.12+: an exhausted FOR_ITER pops the iterator and jumps past the END_FOR at its target (3.13: past
    # END_FOR and the POP_TOP after it). `skips` holds sys.maxsize items, so that target is never reached:
    # it stands after the function's code (`tails`), out of the path a skip takes. 3.12's END_FOR pops
    # two items, the iterator and the item taken, in one instruction.
    after = Label()
    tails += [end, Instr("END_FOR", lineno=lineno)] + ([Instr("POP_TOP", lineno=lineno)] if PY313 else []) + [
        Instr("JUMP_BACKWARD", after, lineno=lineno)]
    pops = [Instr("POP_TOP", lineno=lineno)] * 2 if PY313 else [Instr("END_FOR", lineno=lineno)]
    return load + pops + [after]


def _guarded(conjuncts: Any, call: List[Instr], lineno: int, skips: Any, tails: List[Any]) -> List[Any]:
    """Skip `call` when the conjuncts are certainly false (counting the skip in `skips`; code that only an
    impossible case runs goes to `tails`, after the function's code); any type surprise calls it anyway."""
    to_hook, skip = Label(), Label()
    out: List[Any] = []
    # a guard reads only `guards.safe_parameters` (never deleted, not cells), which are always bound: plain
    # LOAD_FAST, which on 3.12+ trusts that (LOAD_FAST_CHECK would check it on every hit)
    for c in conjuncts:
        if c.op in ("is", "is not"):
            out += [Instr("LOAD_FAST", c.name, lineno=lineno), Instr("LOAD_CONST", c.const, lineno=lineno),
                    Instr("IS_OP", 1 if c.op == "is not" else 0, lineno=lineno),
                    Instr(_JUMP_IF_FALSE, skip, lineno=lineno)]
            continue
        out += _push_call(type, [Instr("LOAD_FAST", c.name, lineno=lineno)], lineno=lineno)
        out += [Instr("LOAD_CONST", type(c.const), lineno=lineno), Instr("IS_OP", 0, lineno=lineno),
                Instr(_JUMP_IF_FALSE, to_hook, lineno=lineno),
                Instr("LOAD_FAST", c.name, lineno=lineno), Instr("LOAD_CONST", c.const, lineno=lineno),
                Instr("COMPARE_OP", _COMPARE[c.op], lineno=lineno), Instr(_JUMP_IF_FALSE, skip, lineno=lineno)]
    if skips is None:
        return out + [to_hook] + call + [skip]
    end = Label()
    counted = _counted(skips, lineno, tails)
    return out + [to_hook] + call + [Instr("JUMP_FORWARD", end, lineno=lineno), skip] + counted + [end]


def instrument_code(code: CodeType, hooks: HookSet) -> CodeType:
    """Return a copy of `code` with `hooks` injected; `code` itself is never modified."""
    bc = Bytecode.from_code(code)
    out: List[Any] = []
    tails: List[Any] = []
    pending_lines = set(hooks.lines)
    prologue_done = False
    first_lineno = code.co_firstlineno
    for instr in bc:
        if isinstance(instr, Instr):
            if not prologue_done and instr.name not in PROLOGUE_OPS:
                prologue_done = True
                if hooks.function_hooks:
                    out.extend(_call(hooks.enter_hook, None, instr.lineno or first_lineno))
            if prologue_done and instr.lineno in pending_lines:
                pending_lines.discard(instr.lineno)
                call = _call(hooks.line_hook, instr.lineno, instr.lineno)
                guard = (hooks.guards or {}).get(instr.lineno)
                skips = (hooks.guard_skips or {}).get(instr.lineno)
                out.extend(_guarded(guard, call, instr.lineno, skips, tails) if guard else call)
            if hooks.function_hooks and instr.name in _RETURNS:
                out.extend(_call(hooks.return_hook, None, instr.lineno))
        out.append(instr)
    bc.clear()
    bc.extend(out + tails)
    if hooks.function_hooks and not PY311:
        _wrap_block_stack(bc, hooks.raise_hook, first_lineno)
    new = bc.to_code()
    if hooks.function_hooks and PY311:
        new = _wrap_exception_table(new, hooks.raise_hook)
    return new


def _raise_relay(raise_hook: Callable[[BaseException], Any]) -> Callable[[Any], Any]:
    def relay(_: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            raise_hook(exc)

    return relay


def _wrap_block_stack(bc: Bytecode, raise_hook: Any, lineno: int) -> None:
    """3.9/3.10: an outermost SETUP_FINALLY whose handler reports and re-raises."""
    handler = Label()
    start = 0
    for i, instr in enumerate(bc):
        if isinstance(instr, Instr) and instr.name not in PROLOGUE_OPS:
            start = i
            break
    bc.insert(start, Instr("SETUP_FINALLY", handler, lineno=lineno))
    # The handler runs with the exception set as "being handled", so the relay reads exc_info.
    tail: List[Any] = [handler]
    tail.extend(_call(_raise_relay(raise_hook), None, lineno))
    tail.append(Instr("RERAISE", 0, lineno=lineno) if PY310 else Instr("RERAISE", lineno=lineno))
    bc.extend(tail)


def _caches(name: str) -> int:
    """Inline cache entries after instruction `name` in this Python (3.11: CALL has 4)."""
    import opcode

    table = getattr(opcode, "_inline_cache_entries")
    return int(table.get(name, 0) if isinstance(table, dict) else table[opcode.opmap[name]])


def _wrap_exception_table(code: CodeType, raise_hook: Any) -> CodeType:
    """3.11+: route every instruction no host handler covers to our handler at the end.

    The handler is entered with the exception as the only stack item (depth 0), calls
    `raise_hook(exc)` and re-raises it with `RERAISE 0`, which neither adds a traceback entry
    nor changes `f_lasti`.
    """
    cb = ConcreteBytecode.from_code(code)
    units: List[int] = []  # code-unit offset of each concrete instruction
    offset = 0
    start_unit = None
    for instr in cb:
        units.append(offset)
        if start_unit is None and instr.name not in PROLOGUE_OPS and instr.name != "CACHE":
            if instr.name != "POP_TOP":  # POP_TOP after RETURN_GENERATOR is prologue too
                start_unit = offset
        offset += instr.size // 2
    end_unit = offset  # first unit after the original code: the handler starts here
    covered = sorted((e.start_offset, e.stop_offset) for e in cb.exception_table)
    gaps: List[tuple] = []
    cursor = start_unit or 0
    for s, e in covered:
        if s > cursor:
            gaps.append((cursor, s - 1))
        cursor = max(cursor, e + 1)
    if cursor < end_unit:
        gaps.append((cursor, end_unit - 1))
    hook_index = len(cb.consts)
    cb.consts.append(raise_hook)
    lineno = code.co_firstlineno
    push = [ConcreteInstr("PUSH_NULL", lineno=lineno), ConcreteInstr("LOAD_CONST", hook_index, lineno=lineno)]
    handler = (push[::-1] if PY313 else push) + [ConcreteInstr("COPY", 3, lineno=lineno)]
    if not PY312:
        handler += [ConcreteInstr("PRECALL", 1, lineno=lineno), ConcreteInstr("CACHE", 0, lineno=lineno)]
    handler.append(ConcreteInstr("CALL", 1, lineno=lineno))
    handler.extend(ConcreteInstr("CACHE", 0, lineno=lineno) for _ in range(_caches("CALL")))
    handler.append(ConcreteInstr("POP_TOP", lineno=lineno))
    handler.append(ConcreteInstr("RERAISE", 0, lineno=lineno))
    cb.extend(handler)
    entry = _bc.concrete.ExceptionTableEntry
    table = list(cb.exception_table)
    for s, e in gaps:
        table.append(entry(s, e, end_unit, 0, False))
    table.sort(key=lambda t: t.start_offset)
    cb.exception_table = table
    return cb.to_code(stacksize=max(code.co_stacksize, 4))
