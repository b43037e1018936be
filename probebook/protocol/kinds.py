"""The words of the protocol: what a probe captures (`Kind`), where it stands (`Status`), what a
metric measures. They are `str` enums, so a member is its word everywhere: it compares equal to it,
hashes like it, formats and serialises as it.

>>> Kind.SNAPSHOT == "snapshot", f"{Status.EMITTING}", "expired" in ENDED
(True, 'emitting', True)
>>> KINDS
('log', 'snapshot', 'metric', 'span', 'exception')
"""

from __future__ import annotations

from enum import Enum
from typing import FrozenSet, Tuple

__all__ = ["Kind", "Status", "KINDS", "EVENT_KINDS", "STATUS_KIND", "FUNCTION_KINDS", "METRIC_TYPES", "ENDED",
           "ACTIVE"]


class _Word(str, Enum):
    """A str enum that is its word: `str()`, `repr()`, f-strings and hashing as the plain string (on
    every Python; 3.11 changed how a mixed-in enum formats), so records holding one read as before."""

    __str__ = str.__str__
    __repr__ = str.__repr__
    __format__ = str.__format__
    __hash__ = str.__hash__


class Kind(_Word):
    """What a probe captures; also the ``kind`` of the events it emits."""

    LOG = "log"
    SNAPSHOT = "snapshot"
    METRIC = "metric"
    SPAN = "span"
    EXCEPTION = "exception"


class Status(_Word):
    """Where a probe stands, as `ProbeInfo.status` and status events say it."""

    PENDING = "pending"  # its module is not imported yet
    INSTALLED = "installed"
    EMITTING = "emitting"  # installed, and hit at least once
    DISABLED = "disabled"  # by a cap, a budget or failing expressions; the reason says which
    EXPIRED = "expired"
    REMOVED = "removed"
    ERROR = "error"

    @property
    def ended(self) -> bool:
        """The probe will not hit again."""
        return self in ENDED


KINDS: Tuple[str, ...] = tuple(k.value for k in Kind)
STATUS_KIND = "status"  # the kind of a `StatusEvent`: a probe's status changed
EVENT_KINDS: Tuple[str, ...] = KINDS + (STATUS_KIND,)
FUNCTION_KINDS: Tuple[str, ...] = (Kind.SPAN.value, Kind.EXCEPTION.value)  # always placed on a whole function
METRIC_TYPES: Tuple[str, ...] = ("count", "gauge", "histogram", "duration")
ENDED: FrozenSet[str] = frozenset({Status.DISABLED, Status.EXPIRED, Status.REMOVED, Status.ERROR})
ACTIVE: FrozenSet[str] = frozenset({Status.INSTALLED, Status.EMITTING})
