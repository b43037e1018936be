"""The assistant's magics: `%%assistant` (the incident in words) and `%investigate` (from the alerts
firing now). Each parses its line, starts an `AssistantRun` (a background thread, so the kernel
stays usable) and answers its live view; `%investigate --stop` and the view's Stop button stop it.

    %%assistant [--budget 110s] [--wait 20s] [--llm] [--title T] [--block]
    checkout 502s since 10:40

    %investigate [ALERT | --latest] [--budget 110s] [--wait 20s] [--llm] [--block]
    %investigate --stop

A kernel interrupt reaches the cell's thread, never the assistant's: only a `--block` cell (which
waits for the verdict) turns an interrupt into a stop.
"""

from __future__ import annotations

import argparse
import time
from typing import List, Optional

from IPython.core.magic import cell_magic, line_magic, magics_class, no_var_expand
from IPython.display import display

from probebook.assistant import Alert, Assistant, LlmConfig
from probebook.assistant.background import AssistantRun
from probebook.widgets import AssistantView
from probebook.widgets.render import fmt_seconds

from .args import MagicError, MagicParser, parse_seconds, user_errors
from .magics import SessionMagics

__all__ = ["AssistantMagics"]

_OPTIONS = "[--budget 110s] [--wait 20s] [--llm] [--block]"
_ASSISTANT_USAGE = f"%%assistant {_OPTIONS} [--title T], then the incident in words in the cell"
_INVESTIGATE_USAGE = f"%investigate [ALERT|--latest] {_OPTIONS} | %investigate --stop"
_STOP_WAIT_S = 30.0  # how long a stop waits for the assistant to remove its probes


def _parser(magic: str, usage: str) -> MagicParser:
    p = MagicParser(magic, usage)
    p.add_argument("--budget")
    p.add_argument("--wait")
    p.add_argument("--llm", action="store_true")
    p.add_argument("--block", action="store_true")
    return p


def _pick(alerts: List[Alert], name: Optional[str], latest: bool) -> List[Alert]:
    """The alerts to investigate: all firing, the one named `name`, or the newest."""
    if not alerts:
        raise MagicError("%investigate: no alert is firing (alerts come from %telemetry alertmanager=URL or "
                         "%alerts --listen); describe the incident in a %%assistant cell instead")
    if latest:
        return [max(alerts, key=lambda a: a.starts_at)]
    if name is None:
        return alerts
    chosen = [a for a in alerts if a.name == name] or [a for a in alerts if a.name.lower() == name.lower()]
    if not chosen:
        firing = ", ".join(sorted({a.name for a in alerts}))
        raise MagicError(f"%investigate: no alert {name!r} is firing; firing now: {firing}")
    return chosen


def _wait_through_interrupts(run: AssistantRun, seconds: float) -> None:
    """Wait for the run to end (its probes removed); a second interrupt does not cut that short."""
    end = time.monotonic() + seconds
    while not run.done and time.monotonic() < end:
        try:
            run.wait(max(0.0, min(0.25, end - time.monotonic())))
        except KeyboardInterrupt:
            continue


@magics_class
class AssistantMagics(SessionMagics):
    """`%%assistant` and `%investigate`, over `probebook.assistant.Assistant`."""

    @no_var_expand
    @cell_magic
    def assistant(self, line: str, cell: str) -> Optional[AssistantView]:
        """%%assistant [--budget 110s] [--wait 20s] [--llm] [--title T] [--block]; body: the incident in words."""
        p = _parser("%%assistant", _ASSISTANT_USAGE)
        p.add_argument("--title", default="")
        a = p.parse(line)
        text = cell.strip()
        if not text:
            raise MagicError("%%assistant: the cell body is the incident in words, e.g. checkout 502s since 10:40")
        return self._start(a, text=text, title=a.title)

    @no_var_expand
    @line_magic
    def investigate(self, line: str) -> Optional[AssistantView]:
        """%investigate [ALERT|--latest] [--budget 110s] [--wait 20s] [--llm] [--block]; %investigate --stop"""
        p = _parser("%investigate", _INVESTIGATE_USAGE)
        p.add_argument("alert", nargs="?")
        p.add_argument("--latest", action="store_true")
        p.add_argument("--stop", action="store_true")
        a = p.parse(line)
        if a.stop:
            if a.alert or a.latest or a.block or a.budget or a.wait or a.llm:
                p.error("--stop takes no other arguments")
            return self._stop()
        if a.alert is not None and a.latest:
            p.error(f"name an ALERT or give --latest, not both ({a.alert!r} and --latest)")
        self._check_idle()
        alerts = _pick(Assistant(self.inv).firing_alerts(), a.alert, a.latest)
        return self._start(a, alerts=alerts)

    # ------------------------------------------------------------------ helpers
    def _check_idle(self) -> None:
        run = self.session.assistant_run
        if run is not None and not run.done:
            raise MagicError(f"an investigation is running ({run.title or run.text[:60]!r}, "
                             f"{fmt_seconds(run.seconds)}); stop it with its Stop button or %investigate --stop")

    def _start(self, a: argparse.Namespace, text: str = "", alerts: Optional[List[Alert]] = None,
               title: str = "") -> Optional[AssistantView]:
        budget = parse_seconds(a.budget, "--budget") if a.budget else None
        wait = parse_seconds(a.wait, "--wait") if a.wait else None
        with user_errors("--llm: "):  # the model's endpoint and name come from PROBEBOOK_LLM_*
            llm = LlmConfig.from_env() if a.llm else None
        self._check_idle()
        inv = self.inv
        if not inv.handles:
            raise MagicError("the assistant probes running services and none is connected; %connect NAME URL first")
        run = AssistantRun(Assistant(inv), text, alerts, title, budget_s=budget, wait_s=wait, llm=llm)
        self.session.assistant_run = run
        if not a.block:
            return self.session.assistant_view(run.start())
        view = self.session.assistant_view(run, live=False)
        display(view)
        run.start()
        try:
            while not run.done:
                run.wait(0.25)
                view.refresh()
        except KeyboardInterrupt:  # reaches this thread, not the assistant's: ask it to stop
            run.stop()
            view.refresh()
            _wait_through_interrupts(run, _STOP_WAIT_S)
        view.refresh()
        return None

    def _stop(self) -> None:
        run = self.session.assistant_run
        if run is None or run.done:
            print("no investigation is running")
            return
        run.stop()
        _wait_through_interrupts(run, _STOP_WAIT_S)
        placed = run.probes()
        if run.done:
            print(f"stopped; the {len(placed)} probes it placed are removed" if placed else "stopped; it had placed "
                  "no probes")
        else:
            live = [r.alias for r in placed if not r.removed]
            print(f"asked to stop; still removing {', '.join(live) or 'its probes'} after {_STOP_WAIT_S:.0f}s")
