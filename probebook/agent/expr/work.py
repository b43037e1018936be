"""The work budget of one probe hit: every costly operation is charged before it runs.

An expression's operations are bounded one by one (`value_checks.MAX_ITEMS`), but a hit could still
chain many of them, or sort a million long strings. So each hit gets `WORK_BUDGET` units, armed by
the probe when the hit starts (`arm`); an operation whose size is not fixed by the expression's own
text (a scan, a copy, a sort, a repr of data read from the frame) first charges what it would touch
(`charge`) and is refused with `OverBudget`, before doing anything, when the hit has not that much
left. A unit is about one item visited (40-200 ns of a Python loop over a container, on this 2-core
VM) or `CHARS_PER_UNIT` characters copied or compared; the budget keeps one hit of any expression
within a few milliseconds of host time (bench/hostile_stall.py measures the worst cases).

Operations on atoms whose size the expression's text bounds (`x > 5`, `name == "bob"`) are not
charged: the common probe pays nothing but `arm`.

>>> arm(); charge(10, "sorted()"); left() == WORK_BUDGET - 10
True
>>> charge(WORK_BUDGET, "sorted()")
Traceback (most recent call last):
...
probebook.errors.OverBudget: sorted() would spend about 50,000 units of work; a hit may spend 50,000 and 49,990 are left (docs/expressions.md#work-budget)
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Optional

from probebook.errors import EvaluationError, OverBudget

__all__ = ["WORK_BUDGET", "FREE_ITEMS", "FREE_TEXT", "CHARS_PER_UNIT", "METER", "arm", "charge", "left", "redacted_names", "secret_shaped", "compared", "text_units", "search_units"]

WORK_BUDGET = 50_000
# What the hot paths do not charge: a lookup in a mapping of up to FREE_ITEMS keys, text up to FREE_TEXT
# characters compared or hashed. An expression has at most 1,000 characters, so at most a few hundred
# such operations, a few tens of thousands of units in all.
FREE_ITEMS = 64
FREE_TEXT = 4096
CHARS_PER_UNIT = 32
_SHIFT = 5  # log2(CHARS_PER_UNIT)
_SLOW_SEARCH = sys.version_info < (3, 10)  # 3.9's substring search is O(n*m) at worst; later ones are linear

METER = threading.local()  # .hit: [units left, the redaction rules or None] of this thread's hit


def arm(rules: Any = None) -> None:
    """Give this thread's current hit a full budget (a probe calls it as a hit starts), and the redaction
    rules (`is_redacted_name`, `is_redacted_value`) that operations apply: to the keys of a mapping they
    read whole (`value_checks.deep`), to a text they read part of (`secret_shaped`). One thread-local
    write: the cost an ordinary probe pays for all of this."""
    METER.hit = [WORK_BUDGET, rules]


def _hit() -> list:
    try:
        return METER.hit
    except AttributeError:  # a thread that never armed: a budget of its own
        hit = METER.hit = [WORK_BUDGET, None]
        return hit


def left() -> int:
    """What this thread's hit has left."""
    return _hit()[0]


def redacted_names() -> Optional[Callable[[str], bool]]:
    """The check of redacted names armed for this thread's hit, or None."""
    rules = _hit()[1]
    return rules.is_redacted_name if rules is not None else None


def secret_shaped(text: Any, what: str) -> None:
    """Refuse an operation that would read part of a text shaped like a secret (`url[16:]`,
    `dsn.split(':')[2]`: the part would no longer match the pattern that hides the whole) or compare it
    (`dsn == guess`, `dsn in guesses`: each hit would answer whether the guess is right)."""
    rules = _hit()[1]
    if rules is not None:
        charge(len(text) >> 3, what)  # the patterns read every character
        if type(text) is not str:
            text = bytes(text).decode("latin-1")
        if rules.is_redacted_value(text):
            raise EvaluationError(f"{what} would read or compare a text shaped like a secret (a credential, "
                                  f"a token); it is redacted whole")


def compared(text: Any, what: str) -> None:
    """`secret_shaped` for a text about to be compared or looked up (the answer would say whether a guess is
    right), with the common case in this one call: a short text the rules already know is clean."""
    try:
        if text in METER.hit[1].rules.clean_texts:  # a Redactor's current rules
            return
    except AttributeError:  # no hit armed, or no value rules (names only): secret_shaped decides
        pass
    secret_shaped(text, what)


def charge(units: int, what: str) -> None:
    """Spend `units` of this hit's budget, or raise `OverBudget` without spending when too few are left."""
    hit = _hit()
    if units > hit[0]:
        raise OverBudget(f"{what} would spend about {units:,} units of work; a hit may spend {WORK_BUDGET:,} "
                         f"and {hit[0]:,} are left (docs/expressions.md#work-budget)")
    hit[0] -= units


def text_units(chars: int) -> int:
    """The units of copying or comparing `chars` characters (or bytes)."""
    return chars >> _SHIFT


def search_units(haystack: int, needle: int) -> int:
    """The units of looking for a `needle` characters long in a `haystack` characters long."""
    if _SLOW_SEARCH:
        return ((haystack >> _SHIFT) + 1) * (1 + (needle >> 2))
    return (haystack + needle) >> _SHIFT
