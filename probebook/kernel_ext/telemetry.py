"""The telemetry magics: `%alerts`, `%promql`, `%logs`, `%changes` and `%telemetry` (the sources).

    %alerts [--stored] [--recent 1h] [--listen [--port P]]
    %promql [--range 30m] [--step 15s] [--at TIME] [--title TEXT] [--out NAME] QUERY   (also %%promql)
    %logs SERVICE [--grep TEXT] [--since 10m] [--trace ID] [--level L] [--limit N] [--out NAME]
    %changes [--since 2h] [--service S] [--out NAME]
    %telemetry [--lab [DIR]] [prometheus=URL] [alertmanager=URL] [loki=URL] [git_repo=PATH] [timeout=SECONDS]

Each parses its line, calls the investigation's telemetry API (`Investigation.telemetry`) and
displays the answer; mistakes are `MagicError` one-liners (a `UsageError` that fails the cell). A partial result is shown with one line
saying what is missing.

``%telemetry --lab`` adds a running lab's sources. The lab sits above this extension, so it is not
imported: it offers its sources as the ``lab`` entry point of the ``probebook.telemetry_sources``
group, a callable ``(telemetry, where) -> TelemetrySources`` (any package may offer one).
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable, Dict, List, Optional, Tuple, Union


from probebook.session import Investigation
from probebook.session.telemetry import PartialResultWarning, Telemetry, TelemetrySources
from probebook.widgets import EvidenceTable
from probebook.widgets.plots import investigation_marks, promql_figure


from .args import MagicError, MagicParser, user_errors

__all__ = ["register_telemetry_magics"]

SOURCES_GROUP = "probebook.telemetry_sources"
SourcesJoiner = Callable[[Telemetry, Optional[str]], TelemetrySources]

_PROMQL_USAGE = "%promql [--range 30m] [--step 15s] [--at TIME] [--title TEXT] [--out NAME] QUERY"
_PROMQL_OPTION = re.compile(r"--(range|step|at|out|title)(?:=|\s+)(\"[^\"]*\"|'[^']*'|\S+)\s*")


def _split_promql(line: str) -> Tuple[Dict[str, str], str]:
    """Leading ``--option value`` pairs, then the query verbatim (PromQL keeps its quotes and spaces)."""
    rest, opts = line.strip(), {}
    while rest.startswith("--"):
        m = _PROMQL_OPTION.match(rest)
        if not m:
            word = rest.split()[0]
            raise MagicError(f"%promql: unknown option {word} or it lacks a value; usage: {_PROMQL_USAGE}")
        opts[m.group(1)] = m.group(2).strip("'\"") if m.group(2)[:1] in "'\"" else m.group(2)
        rest = rest[m.end():]
    return opts, rest.strip()


def _bind(shell: Any, name: Optional[str], value: Any, magic: str) -> None:
    if name is None:
        return
    if not name.isidentifier():
        raise MagicError(f"{magic}: --out {name!r}: expected a Python variable name")
    shell.user_ns[name] = value


def _show_partial(caught: List[warnings.WarningMessage]) -> None:
    for w in caught:
        if issubclass(w.category, PartialResultWarning):
            print(f"⚠ {w.message}")


def sources_joiner(name: str) -> SourcesJoiner:
    """The installed `SOURCES_GROUP` entry point `name` (``lab``: the lab's `use_lab`)."""
    found = entry_points()
    group = found.select(group=SOURCES_GROUP) if hasattr(found, "select") else found.get(SOURCES_GROUP, [])
    for ep in group:
        if ep.name == name:
            joiner: SourcesJoiner = ep.load()
            return joiner
    raise MagicError(f"%telemetry --{name}: no {name!r} telemetry sources installed; reinstall probebook "
                     f"(pip install -e '.[lab]') so its entry points are registered")


def register_telemetry_magics(ipython: Any,
                              get_investigation: Callable[[], Union[Investigation, Telemetry]]) -> None:
    """Register the telemetry magics on `ipython`; `get_investigation()` answers the session's
    `Investigation` (or a bare `Telemetry`, whose calls the magics then make)."""

    def telemetry() -> Telemetry:
        with user_errors():
            inv = get_investigation()
            return inv if isinstance(inv, Telemetry) else inv.telemetry

    def call(fn: Callable[[], Any]) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PartialResultWarning)
            with user_errors():
                out = fn()
        _show_partial(caught)
        return out

    def alerts(line: str) -> Any:
        p = MagicParser("%alerts", "%alerts [--stored] [--recent 1h] [--listen [--port P]]")
        p.add_argument("--stored", action="store_true")
        p.add_argument("--recent", default="1h")
        p.add_argument("--listen", action="store_true")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--out")
        args = p.parse(line)
        tel = telemetry()
        if args.listen:
            url = call(lambda: tel.listen_alerts(args.port))
            print(f"receiving alerts at {url} (Alertmanager: receivers: - webhook_configs: - url: {url})")
        frame = call(lambda: tel.alerts(poll=not args.stored, recent=args.recent))
        table = EvidenceTable.of(frame, "alerts")
        _bind(ipython, args.out, table, "%alerts")
        return table

    def promql(line: str, cell: Optional[str] = None) -> Any:
        opts, query = _split_promql(line)
        if cell is not None:
            query = (query + " " + cell).strip()
        if not query:
            raise MagicError(f"%promql: no query; usage: {_PROMQL_USAGE}")
        tel = telemetry()
        frame = call(lambda: tel.promql(query, range=opts.get("range"), step=opts.get("step"), at=opts.get("at")))
        _bind(ipython, opts.get("out"), frame, "%promql")
        if frame.height == 0:
            print(f"no data for {query}")
            return None
        from IPython.display import display

        span = (frame["ts"].min(), frame["ts"].max())
        display(promql_figure(frame, query, title=opts.get("title", ""), marks=investigation_marks(tel.store),
                              x_range=span))
        series = frame["series"].n_unique()
        print(f"{frame.height} samples of {series} series; evidence {frame['evidence_id'][0].rsplit(':', 2)[0]}:*"
              f" (query {tel.last.query_id if tel.last else '?'})")
        return None

    def logs(line: str) -> Any:
        usage = "%logs SERVICE [--grep TEXT] [--since 10m] [--trace ID] [--level L] [--limit N] [--out NAME]"
        p = MagicParser("%logs", usage)
        p.add_argument("service")
        p.add_argument("--grep")
        p.add_argument("--since")
        p.add_argument("--trace")
        p.add_argument("--level")
        p.add_argument("--limit", type=int, default=1000)
        p.add_argument("--out")
        args = p.parse(line)
        tel = telemetry()
        frame = call(lambda: tel.logs(args.service, grep=args.grep, since=args.since, trace=args.trace,
                                      level=args.level, limit=args.limit))
        table = EvidenceTable.of(frame, f"logs of {args.service}", newest=True)
        _bind(ipython, args.out, table, "%logs")
        return table

    def changes(line: str) -> Any:
        p = MagicParser("%changes", "%changes [--since 2h] [--service S] [--out NAME]")
        p.add_argument("--since")
        p.add_argument("--service")
        p.add_argument("--out")
        args = p.parse(line)
        tel = telemetry()
        frame = call(lambda: tel.changes(since=args.since, service=args.service))
        table = EvidenceTable.of(frame, "changes", newest=True)
        _bind(ipython, args.out, table, "%changes")
        return table

    def telemetry_magic(line: str) -> Any:
        usage = "%telemetry [--lab [DIR]] [prometheus=URL] [alertmanager=URL] [loki=URL] [git_repo=PATH] [timeout=S]"
        p = MagicParser("%telemetry", usage)
        p.add_argument("--lab", nargs="?", const="", default=None)
        p.add_argument("settings", nargs="*")
        args = p.parse(line)
        tel = telemetry()
        if args.lab is not None:
            use_lab = sources_joiner("lab")
            call(lambda: use_lab(tel, args.lab or None))
        changes_: Dict[str, Any] = {}
        for item in args.settings:
            key, eq, value = item.partition("=")
            if not eq or key not in ("prometheus", "alertmanager", "loki", "git_repo", "timeout", "log_glob"):
                raise MagicError(f"%telemetry: {item!r}: expected prometheus=, alertmanager=, loki=, log_glob=, "
                                 f"git_repo= or timeout=; usage: {usage}")
            if key == "timeout":
                try:
                    changes_[key] = float(value)
                except ValueError:
                    raise MagicError(f"%telemetry: timeout={value!r}: expected seconds, e.g. timeout=10") from None
            else:
                changes_[key] = value  # "" clears it
        if changes_:
            call(lambda: tel.configure(**changes_))
        s = tel.sources
        receiver = tel.receiver.url if tel.receiver is not None else None
        for name, value in (("prometheus", s.prometheus), ("alertmanager", s.alertmanager),
                            ("alert receiver", receiver), ("loki", s.loki), ("log files", s.log_paths or None),
                            ("log glob", s.log_glob),
                            ("git", s.git_repo and f"{s.git_repo} {s.git_paths or ''}".strip()),
                            ("change logs", s.change_logs or None), ("timeout", f"{s.timeout:g}s")):
            print(f"{name:>14}: {value if value else '-'}")
        return None

    ipython.register_magic_function(alerts, "line", "alerts")
    ipython.register_magic_function(promql, "line_cell", "promql")
    ipython.register_magic_function(logs, "line", "logs")
    ipython.register_magic_function(changes, "line", "changes")
    ipython.register_magic_function(telemetry_magic, "line", "telemetry")
