"""The magics. Each one parses its line, calls the `Investigation` and displays the answer.

Mistakes (a wrong flag, an unknown service, a bad location, an unsafe expression, an agent that
refuses) are `MagicError` one-liners (a `UsageError` that fails the cell); nothing here prints a traceback at the user.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from probebook.protocol.kinds import KINDS
from probebook.session import Investigation
from probebook.widgets import EvidenceTable, ServicesView, SnapshotViewer

from probebook.widgets.progress import WaitProgress

from .args import MagicError, MagicParser, parse_metric, parse_range, parse_seconds, split_line, user_errors
from .session import KernelSession

__all__ = ["ProbebookMagics", "SessionMagics"]

_PROBE_USAGE = ("%probe log|snapshot|metric|span|exception NAME WHERE [TEMPLATE] [--when EXPR] [--template T] "
                "[--capture EXPR] [--metric NAME[:TYPE][=EXPR]] [--unit U] [--ttl 15m] [--rate 5/s] [--max-hits N] "
                "[--as ALIAS] [--partial] [--pending]; %probe ls; %probe rm ALIAS...|--all")


def split_expressions(text: str) -> List[str]:
    """``a, f(b, c), d`` -> ``['a', 'f(b, c)', 'd']``: commas inside brackets or quotes stay."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def _bind_name(parser: MagicParser, name: Optional[str]) -> Optional[str]:
    if name is not None and not name.isidentifier():
        parser.error(f"--out {name!r}: expected a Python variable name")
    return name


class SessionMagics(Magics):
    """Magics over the kernel's session; `session()` answers it (it changes on %reload_ext)."""

    def __init__(self, shell: Any, session: Callable[[], KernelSession]) -> None:
        super().__init__(shell)
        self._session = session

    @property
    def session(self) -> KernelSession:
        return self._session()

    @property
    def inv(self) -> Investigation:
        with user_errors():
            return self.session.investigation()


@magics_class
class ProbebookMagics(SessionMagics):
    """`%connect`, `%services`, `%source`, `%probe`, `%%snapshot`, `%%sql`, `%mark`, `%timeline`."""

    # ------------------------------------------------------------------ services
    @line_magic
    def connect(self, line: str) -> None:
        """%connect NAME URL|DIR [--token-file F] [--backlog] | %connect --redis URL --service NAME [--token-file F]"""
        p = MagicParser("%connect", "%connect NAME URL|DIR [--token-file F] [--backlog] | %connect --redis URL "
                                    "--service NAME [--token-file F]")
        p.add_argument("args", nargs="*")
        p.add_argument("--token-file")
        p.add_argument("--backlog", action="store_true", help="also store the events the agents hold already")
        p.add_argument("--redis")
        p.add_argument("--service")
        a = p.parse(line)
        token_file = a.token_file or self.session.config.token_file or None
        inv = self.inv
        if a.redis:
            if a.args or not a.service:
                p.error("--redis takes --service NAME and no other arguments")
            with user_errors():
                row = inv.connect_redis(a.redis, a.service, token_file=token_file)
        else:
            if len(a.args) != 2 or a.service:
                p.error("expected a service NAME and its agent URL (or URLs joined by commas, or a port-file directory)")
            name, target = a.args
            with user_errors():
                row = inv.connect(name, target.split(",") if "," in target else target, token_file=token_file,
                                  backlog=a.backlog)
        bosses = f" (and {row['supervisors']} supervisor)" if row.get("supervisors") else ""
        print(f"connected {row['service']} ({row['target']}): {row['healthy']} of {row['instances']} instances "
              f"healthy{bosses}, Python {row['python'] or '?'}, {row['probes']} probes")

    @line_magic
    def services(self, line: str) -> ServicesView:
        """%services: connected services with instances, Python, probes and health."""
        if line.strip():
            raise MagicError("%services takes no arguments")
        return ServicesView(self.inv.services())

    @line_magic
    def source(self, line: str) -> None:
        """%source NAME FILE[:A-B]: the code the service runs, with line numbers."""
        p = MagicParser("%source", "%source NAME FILE[:A-B]")
        p.add_argument("service")
        p.add_argument("file")
        a = p.parse(line)
        path, start, end = parse_range(a.file)
        with user_errors():
            print(self.inv.source(a.service, path, start, end))

    # ------------------------------------------------------------------ probes
    @no_var_expand
    @line_magic
    def probe(self, line: str) -> Any:
        """%probe KIND NAME WHERE [...flags]; %probe ls; %probe rm ALIAS...|--all"""
        words = split_line(line, "%probe")
        if not words:
            raise MagicError(f"usage: {_PROBE_USAGE}")
        if words[0] == "ls":
            if len(words) > 1:
                raise MagicError("%probe ls takes no arguments")
            return self.session.probe_panel(None)
        if words[0] == "rm":
            return self._remove(words[1:])
        if words[0] not in KINDS:
            raise MagicError(f"%probe: unknown kind {words[0]!r}; use one of {', '.join(KINDS)}, or ls, rm")
        p = MagicParser("%probe", _PROBE_USAGE)
        p.add_argument("kind")
        p.add_argument("service")
        p.add_argument("where")
        p.add_argument("words", nargs="*")
        for flag in ("--when", "--template", "--metric", "--unit", "--ttl", "--rate", "--name"):
            p.add_argument(flag)
        p.add_argument("--capture", action="append", default=[])
        p.add_argument("--max-hits", type=int)
        p.add_argument("--as", dest="alias")
        p.add_argument("--partial", action="store_true", help="keep it on the instances that took it when others refuse")
        p.add_argument("--pending", action="store_true", help="wait for a file no instance has loaded or has on disk")
        a = p.parse_args(words)
        template = a.template
        if a.words:
            if a.kind != "log" or template is not None:
                p.error(f"unexpected words {' '.join(a.words)!r} (only a log probe takes its template unflagged)")
            template = " ".join(a.words)
        if a.kind != "metric" and (a.metric or a.unit):
            p.error(f"--metric and --unit are for metric probes, this one is {a.kind}")
        metric = parse_metric(a.metric)
        if a.unit:
            metric = {**(metric or {}), "unit": a.unit}  # no name: the spec names it after the location
        with user_errors():
            record = self.inv.probe(
                a.kind, a.service, a.where, when=a.when, template=template, metric=metric,
                capture=[e for chunk in a.capture for e in split_expressions(chunk)],
                ttl=a.ttl or self.session.config.default_ttl, rate=a.rate, max_hits=a.max_hits, name=a.name,
                alias=a.alias, partial=a.partial, pending=a.pending)
        panel = self.session.probe_panel([record.alias])
        if not record.placed.ok:
            panel.say(record.summary)  # placed on some instances only: say which failed
        return panel

    def _remove(self, words: List[str]) -> None:
        p = MagicParser("%probe rm", "%probe rm ALIAS... | %probe rm --all")
        p.add_argument("aliases", nargs="*")
        p.add_argument("--all", action="store_true")
        a = p.parse_args(words)
        if a.all == bool(a.aliases):
            p.error("name the probes to remove, or --all")
        removed: List[str] = []
        with user_errors():
            if a.all:
                removed = self.inv.remove(everything=True)
            for alias in a.aliases:
                removed += self.inv.remove(alias)
        print(f"removed {', '.join(removed)}" if removed else "no live probes to remove")

    @no_var_expand
    @cell_magic
    def snapshot(self, line: str, cell: str) -> SnapshotViewer:
        """%%snapshot NAME FILE:LINE [--when EXPR] [--wait 30s] [--hits N] [--out VAR]; body: expressions"""
        p = MagicParser("%%snapshot", "%%snapshot NAME FILE:LINE [--when EXPR] [--wait 30s] [--hits N] [--out VAR] "
                                      "[--as ALIAS], then one expression to capture per line")
        p.add_argument("service")
        p.add_argument("where")
        p.add_argument("--when")
        p.add_argument("--wait")
        p.add_argument("--hits", type=int, default=1)
        p.add_argument("--out")
        p.add_argument("--as", dest="alias")
        a = p.parse(line)
        out = _bind_name(p, a.out)
        wait = parse_seconds(a.wait or self.session.config.default_wait, "--wait")
        expressions = [e for raw in cell.splitlines() if raw.strip() and not raw.strip().startswith("#")
                       for e in split_expressions(raw)]
        progress = WaitProgress(f"snapshot at {a.where} on {a.service}")
        try:
            with user_errors():
                result = self.inv.snapshot(a.service, a.where, expressions, when=a.when, wait=wait, hits=a.hits,
                                           alias=a.alias, progress=progress)
        except KeyboardInterrupt:
            progress.finish("interrupted; the probe was removed", ok=False)
            return None  # type: ignore[return-value]
        got = len(result.snapshots)
        progress.finish(f"{got} of {a.hits} snapshots" + (" (the wait ended first)" if result.timed_out else ""),
                        ok=not result.timed_out)
        if out:
            self.shell.user_ns[out] = result
        return self.session.adopt(SnapshotViewer(result))  # type: ignore[return-value]

    # ------------------------------------------------------------------ evidence
    @no_var_expand
    @cell_magic
    def sql(self, line: str, cell: str) -> Any:
        """%%sql [--out VAR]; body: SQL over the evidence store. The result is a polars DataFrame."""
        p = MagicParser("%%sql", "%%sql [--out VAR], then the query")
        p.add_argument("--out")
        out = _bind_name(p, p.parse(line).out)
        if not cell.strip():
            raise MagicError("%%sql: the cell body is the query, e.g. SELECT message FROM logs LIMIT 10")
        with user_errors():
            frame = self.inv.sql(cell)
        table = EvidenceTable.of(frame, reorder=False)  # the query's SELECT says what comes first
        if out:
            self.shell.user_ns[out] = table
        return table

    @line_magic
    def mark(self, line: str) -> None:
        """%mark "text": a note on the timeline (``{var}`` is expanded)."""
        text = " ".join(split_line(line, "%mark"))
        with user_errors():
            eid = self.inv.mark(text)
        print(f"marked {eid}")

    @line_magic
    def timeline(self, line: str) -> Any:
        """%timeline: the investigation's timeline, live."""
        if line.strip():
            raise MagicError("%timeline takes no arguments")
        with user_errors():
            return self.session.timeline_view()
