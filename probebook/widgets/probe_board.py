"""The live state of an investigation's probes, for the panels: one row per probe.

Two sources, so a row moves as fast as evidence arrives and stays right when a service dies:
events counted as the collector stores them (a listener: hits, rate, last value, status events),
and the agents' own view (`Investigation.probes()`: hits, status, TTL) polled at most once per
`poll_interval`. When a service stops answering, its rows keep the last known numbers and say
`down` in the health column instead of raising.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from probebook.errors import one_line
from probebook.protocol.kinds import ENDED
from probebook.session import Investigation

from .render import node_text

__all__ = ["ProbeBoard", "ProbeRow"]

RATE_WINDOW = 10.0  # seconds of the agents' hit counts behind the rate column
_RECHECK = 0.5  # seconds before the records are searched again for an unknown probe id
_HELD = 512  # events of unknown probe ids kept for a record that comes a moment after them


@dataclass(frozen=True)
class ProbeRow:
    alias: str
    service: str
    kind: str
    where: str
    status: str
    health: str  # "ok", or "down: why" while the service does not answer
    hits: int
    rate: Optional[float]  # hits a second over the last RATE_WINDOW s, from the agents' counts (None: not known)
    expires_at: float  # kernel clock; 0 when unknown or over
    last: str  # the last value seen, one line
    reason: str
    declined: str = ""  # hits that emitted nothing: "5 rate-limited, 2 failed" (and "3 filtered" by the condition)
    emitted: Optional[int] = None  # events the agents sent for these hits (max_hits counts these)


@dataclass
class _Seen:
    events: int = 0
    last: Any = None  # the last AgentEvent that was not a status
    status: Tuple[str, str, float] = ("", "", 0.0)  # status, reason, when


@dataclass
class _Polled:
    status: str
    hits: int
    expires_at: float
    reason: str
    at: float
    declined: str = ""
    emitted: Optional[int] = None
    history: Deque[Tuple[float, int]] = field(default_factory=lambda: collections.deque(maxlen=64))


_DECLINED = (("rate_limited", "rate-limited"), ("failed", "failed"), ("filtered", "filtered"))


class ProbeBoard:
    """Attach to an investigation with the constructor; `close()` detaches."""

    def __init__(self, inv: Investigation, poll_interval: float = 1.0) -> None:
        self.inv = inv
        self.poll_interval = poll_interval
        self.polls = 0
        self._lock = threading.Lock()
        self._seen: Dict[str, _Seen] = {}  # alias -> what the collector saw
        self._polled: Dict[str, _Polled] = {}
        self._index: Dict[str, str] = {}  # probe id (fleet or instance) -> alias
        # ids of probes not in the investigation's records when their events came (someone else's, or
        # one being placed: its first events can arrive before its record), looked up again after a while
        self._foreign: Dict[str, float] = {}
        self._held: Deque[Any] = collections.deque(maxlen=_HELD)  # their latest events
        self._last_poll = 0.0
        inv.collector.listen(self._on_events)

    # ------------------------------------------------------------------ sources
    def _alias_of(self, probe_id: str, now: float) -> Optional[str]:
        alias = self._index.get(probe_id)
        if alias is None and now - self._foreign.get(probe_id, 0.0) >= _RECHECK:  # placed (or extended) since
            index = {}
            for rec in list(self.inv.records.values()):
                for pid in set(rec.placed.probe_ids.values()) | {rec.fleet_id}:
                    index[pid] = rec.alias
            self._index = index
            alias = index.get(probe_id)
            if alias is None:
                self._foreign[probe_id] = now
        return alias

    def _with_held(self, events: Sequence[Any], now: float) -> List[Tuple[str, Any]]:
        """(alias, event) of ours, with the held events of a probe whose record has come since, first."""
        out: List[Tuple[str, Any]] = []
        for event in events:
            alias = self._alias_of(event.probe_id, now)
            if alias is None:
                self._held.append(event)
                continue
            if self._foreign.pop(event.probe_id, None) is not None:
                early = [e for e in self._held if e.probe_id == event.probe_id]
                self._held = collections.deque((e for e in self._held if e.probe_id != event.probe_id), maxlen=_HELD)
                out.extend((alias, e) for e in early)
            out.append((alias, event))
        return out

    def _on_events(self, service: str, events: Sequence[Any]) -> None:
        """Collector thread: count, keep the last value; cheap and never raising."""
        now = time.time()
        with self._lock:
            self._count(self._with_held(events, now))

    def _count(self, ours: Sequence[Tuple[str, Any]]) -> None:
        for alias, event in ours:
            seen = self._seen.setdefault(alias, _Seen())
            if event.kind == "status":
                seen.status = (str(event.data.get("status", "")), str(event.data.get("reason", "")), event.ts)
            else:
                seen.events += 1
                seen.last = event

    def poll(self, now: Optional[float] = None, force: bool = False) -> None:
        """Ask the agents (at most once per `poll_interval` unless `force`)."""
        now = time.time() if now is None else now
        if not force and now - self._last_poll < self.poll_interval:
            return
        self._last_poll = now
        if not any(not r.removed for r in list(self.inv.records.values())) and not force:
            return
        frame = self.inv.probes()
        self.polls += 1
        if "hits" not in frame.columns:
            return
        with self._lock:
            for row in frame.iter_rows(named=True):
                # nobody answered: keep what we knew; removed: its final counts come with its record
                # (a removal nobody answered keeps the last live counts, not zeros)
                if row["status"] in ("unknown", "removed"):
                    continue
                ttl = float(row["ttl_left_s"] or 0.0)
                old = self._polled.get(row["alias"])
                expires = now + ttl if ttl > 0 else 0.0
                if old is not None and old.expires_at and abs(old.expires_at - expires) < 2.0:
                    expires = old.expires_at  # the same TTL seen again: keep the anchor, no redraw
                self._polled[row["alias"]] = _from_row(row, now, expires, old)

    # ------------------------------------------------------------------ rows
    def rows(self, aliases: Optional[Sequence[str]] = None, now: Optional[float] = None) -> List[ProbeRow]:
        """One row per probe placed in this investigation (only `aliases`, when given), in order."""
        now = time.time() if now is None else now
        wanted = None if aliases is None else set(aliases)
        errors = dict(self.inv.collector.errors)
        out = []
        with self._lock:
            if self._held:  # events of a probe whose record came after them, and no event since
                self._on_held(now)
            for rec in list(self.inv.records.values()):
                if wanted is not None and rec.alias not in wanted:
                    continue
                seen = self._seen.get(rec.alias) or _Seen()
                polled = self._polled.get(rec.alias)
                if rec.removed and rec.final:  # the agents' own last word, given as they removed it
                    polled = _from_row({**rec.final, "status": "removed", "reason": ""}, rec.removed_at, 0.0, polled)
                status, reason = self._status(rec.removed, seen, polled)
                problem = errors.get(rec.service, "")
                live = status not in ENDED
                out.append(ProbeRow(
                    alias=rec.alias, service=rec.service, kind=rec.kind, where=rec.where, status=status,
                    health=("down: " + one_line(problem, 160)) if problem else "ok",
                    # the agents' count, the one the rate and the emitted/declined counts come from; the
                    # events seen when the service does not answer (they ran ahead of its last count)
                    hits=polled.hits if polled and (rec.removed or not problem)
                    else max(seen.events, polled.hits if polled else 0),
                    rate=_rate(polled.history, now) if polled and live else None,
                    expires_at=polled.expires_at if polled and live else 0.0,
                    last=_last_value(seen.last), reason=reason, declined=polled.declined if polled else "",
                    emitted=polled.emitted if polled else None))
        return out

    def _on_held(self, now: float) -> None:
        events, self._held = list(self._held), collections.deque(maxlen=_HELD)
        self._count(self._with_held(events, now))

    @staticmethod
    def _status(removed: bool, seen: _Seen, polled: Optional[_Polled]) -> Tuple[str, str]:
        if removed:
            return "removed", ""
        from_events = seen.status
        if polled is not None and polled.at >= from_events[2]:
            return polled.status, polled.reason
        if from_events[0]:
            return from_events[0], from_events[1]
        return "placed", ""

    def close(self) -> None:
        self.inv.collector.unlisten(self._on_events)


def _from_row(row: Any, now: float, expires: float, old: Optional[_Polled]) -> _Polled:
    """What the agents said of one probe at `now` (a row of `Investigation.probes()`), its hit counts
    kept beside the earlier ones for the rate."""
    declined = ", ".join(f"{int(row.get(k) or 0)} {label}" for k, label in _DECLINED if int(row.get(k) or 0))
    hits = int(row.get("hits") or 0)
    history = old.history if old is not None else collections.deque(maxlen=64)
    if int(row.get("missing") or 0):
        pass  # an instance did not answer: its hits are not in this sum, which says nothing of the rate
    elif history and hits < history[-1][1]:  # a new probe under the alias (extended): counts start again
        history.clear()
        history.append((now, hits))
    elif not history or history[-1][0] < now:
        history.append((now, hits))
    emitted = row.get("emitted")
    return _Polled(str(row.get("status") or ""), hits, expires, str(row.get("reason") or ""), now, declined,
                   int(emitted) if emitted is not None else None, history)


def _rate(history: Deque[Tuple[float, int]], now: float) -> Optional[float]:
    """Hits a second over the last `RATE_WINDOW` seconds of the agents' counts (None until two counts
    at least a second apart are known): the same hits the column shows, over a stated window."""
    recent = [(t, h) for t, h in history if now - t <= RATE_WINDOW + 0.5]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < 1.0:
        return None
    (t0, h0), (t1, h1) = recent[0], recent[-1]
    return round(max(0, h1 - h0) / (t1 - t0), 1)


def _last_value(event: Any) -> str:
    """The last event of a probe as one line: the message, the value, the duration, the error."""
    if event is None:
        return ""
    data = event.data
    kind = event.kind
    if kind == "log":
        return str(data.get("message", ""))
    if kind == "metric":
        return f"{data.get('name', '')}={data.get('value')}{data.get('unit') or ''}" + (
            " (raised)" if data.get("error") else "")
    if kind == "span":
        text = f"{data.get('name', '')} {int(data.get('duration_ns') or 0) / 1e6:.2f} ms"
        return text + (f" error {data['error']}" if data.get("error") else "")
    if kind == "exception":
        args = (data.get("message") or {}).get("args") or {}
        first = (args.get("elements") or [None])[0] if isinstance(args, dict) else None
        return f"{data.get('exc_type', '')}: {node_text(first, 120) if first else ''}".rstrip(": ")
    if kind == "snapshot":
        exprs = data.get("expressions") or {}
        if exprs:
            return ", ".join(f"{k}={node_text(v, 40)}" for k, v in list(exprs.items())[:4])
        return f"{len(data.get('locals') or {})} locals at {data.get('function', '')}:{data.get('line', '')}"
    return kind
