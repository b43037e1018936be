"""The lifecycle after a verdict, from the notebook: `%contain` (containment with approval), `%fixcheck`
(a candidate fix replayed on production's calls), `%verify` (the proof's probes again, after a fix) and
`%postmortem` (the re-runnable postmortem notebook of this investigation).

    %contain [--remediation NAME|MODULE:FACTORY] [--verdict ID] [--since 6h]    proposals, Approve / Refuse
    %contain ID --yes [--timeout 120s]    approve ID (as listed: rollback-orders-2.7.1) in words, wait for it
    %contain ID --refuse
    %fixcheck --root DIR REL=FIXED [REL=FIXED ...] [--verdict ID] [--service S] [--capture 20s] [--python PATH]
    %verify [--verdict ID] [--calls 20] [--timeout 60s]
    %postmortem [-o postmortem.ipynb] [--verdict ID] [--no-execute]

`%fixcheck` names the folder the service imports its code from (`--root`) and, for each file the fix
changes, its path there and a file holding the fixed text (``shop/orders.py=orders_fixed.py``). A fix that
is not validated, and a verification that does not find the cause gone, fail the cell with one line (a
runbook must not go on as if they had), after the table of what was replayed.

The remediation is a variable of the notebook (``remediation = LabRemediation(lab)``) or a factory
``MODULE:FACTORY`` called with the investigation; it is remembered for the next `%contain`. A `--yes`
that does not end contained (failed, refused, stale, symptom still there or not judged) fails the cell
(nbval and papermill see it) with one line; `--refuse` records the refusal and does not fail it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from IPython.core.magic import line_magic, magics_class, no_var_expand

from probebook.assistant.containment import (ContainmentResult, Proposal, changes_elsewhere, checked_remediation,
                                             contain, current_user, default_audit_path, load_remediation, propose,
                                             why_no_proposal)
from probebook.assistant.journal import Journal
from probebook.assistant.model import Verdict
from probebook.widgets.containment_view import ContainmentView

from .args import MagicError, MagicParser, parse_seconds, user_errors
from .magics import SessionMagics

__all__ = ["LifecycleMagics"]

_CONTAIN_USAGE = ("%contain [--remediation NAME|MODULE:FACTORY] [--verdict ID] [--since 6h] | %contain ID --yes "
                  "[--timeout 120s] | %contain ID --refuse")
_POSTMORTEM_USAGE = "%postmortem [-o OUT.ipynb] [--verdict ID] [--no-execute]"
_FIXCHECK_USAGE = ("%fixcheck --root DIR REL=FIXED [REL=FIXED ...] [--verdict ID] [--service S] [--capture 20s] "
                   "[--python PATH]")
_VERIFY_USAGE = "%verify [--verdict ID] [--calls 20] [--timeout 60s]"


@magics_class
class LifecycleMagics(SessionMagics):
    """`%contain` and `%postmortem` over `probebook.assistant.containment` and `.postmortem`."""

    @no_var_expand
    @line_magic
    def contain(self, line: str) -> Optional[ContainmentView]:
        """%contain [--remediation R] [--verdict ID] [--since 6h] | %contain ID --yes [--timeout 120s] | --refuse"""
        p = MagicParser("%contain", _CONTAIN_USAGE)
        p.add_argument("proposal", nargs="?")
        p.add_argument("--remediation")
        p.add_argument("--verdict")
        p.add_argument("--since", default="6h")
        p.add_argument("--yes", action="store_true")
        p.add_argument("--refuse", action="store_true")
        p.add_argument("--timeout", default="120s")
        a = p.parse(line)
        if (a.yes or a.refuse) and not a.proposal:
            p.error("--yes and --refuse name the proposal they decide, e.g. %contain rollback-orders-2.7.1 --yes")
        if a.proposal and not (a.yes or a.refuse):
            p.error(f"say what to do with {a.proposal}: --yes (do it) or --refuse")
        if a.yes and a.refuse:
            p.error("--yes or --refuse, not both")
        timeout = parse_seconds(a.timeout, "--timeout")
        inv = self.inv
        if a.remediation:
            self.session.remediation = self._remediation(a.remediation)
        verdict = self._verdict(a.verdict)
        with user_errors("%contain: "):
            proposals = propose(inv, verdict, since=a.since)
        incident = Journal(inv.store).incident_of(verdict.id)
        who = f"notebook:{current_user()}"

        def decide(proposal: Proposal, approved: bool) -> ContainmentResult:
            remediation = self.session.remediation
            if approved and remediation is None:
                raise MagicError("%contain: nothing can change services here; name one with --remediation NAME "
                                 "(a variable holding a Remediation, e.g. LabRemediation(lab)) or MODULE:FACTORY")
            return contain(inv, proposal, remediation, approve=approved, alerts=incident.alerts if incident else (),
                           verdict=verdict, audit=default_audit_path(inv.store.path), who=who, check_timeout=timeout)

        if a.proposal:
            chosen = next((x for x in proposals if x.id == a.proposal), None)
            if chosen is None:
                raise MagicError(f"%contain: no proposal {a.proposal}; proposed: "
                                 f"{', '.join(x.id for x in proposals) or 'none'}")
            with user_errors("%contain: "):
                result = decide(chosen, a.yes)
            print(result.headline())
            if a.yes and result.outcome != "contained":
                raise MagicError(f"%contain: {result.headline()}")
            return None
        with user_errors("%contain: "):
            leads = changes_elsewhere(inv, verdict, a.since) if not proposals else []
        view = ContainmentView(f"containment for {verdict.headline()[:100]}", proposals, decide,
                               poke=self.session.publisher.poke, why_none=why_no_proposal(verdict.kind, leads))
        self.session._go_live(("containment",), view)
        return self.session.adopt(view)  # type: ignore[return-value]

    @no_var_expand
    @line_magic
    def fixcheck(self, line: str) -> None:
        """%fixcheck --root DIR REL=FIXED [...] [--verdict ID] [--service S] [--capture 20s] [--python PATH]"""
        p = MagicParser("%fixcheck", _FIXCHECK_USAGE)
        p.add_argument("files", nargs="*")
        p.add_argument("--root")
        p.add_argument("--verdict")
        p.add_argument("--service")
        p.add_argument("--capture", default="20s")
        p.add_argument("--python")
        a = p.parse(line)
        if not a.root or not a.files:
            p.error("name the service's code folder and each fixed file: --root DIR shop/orders.py=orders_fixed.py")
        fixed = {}
        for item in a.files:
            rel, sep, path = item.partition("=")
            if not sep or not rel or not path:
                p.error(f"{item}: write PATH_IN_ROOT=FILE_WITH_THE_FIXED_TEXT")
            try:
                with open(path, encoding="utf-8") as fh:
                    fixed[rel] = fh.read()
            except OSError as exc:
                raise MagicError(f"%fixcheck: cannot read {path} ({exc.strerror}); give a file holding the fixed text")
        verdict = self._verdict(a.verdict)
        from IPython.display import display

        from probebook.assistant.fixcheck import Fix, validate_fix
        from probebook.assistant.postmortem_cells import fix_replays

        with user_errors("%fixcheck: "):
            # --capture 0: only the calls the store holds, nothing placed
            capture = 0.0 if a.capture.strip() in ("0", "0s") else parse_seconds(a.capture, "--capture")
            result = validate_fix(self.inv, verdict, Fix(a.root, fixed, python=a.python), service=a.service,
                                  capture_s=capture)
        rows = fix_replays(self.inv)
        display(rows.filter(rows["validation"] == result.id))
        if not result.validated:
            raise MagicError(f"%fixcheck: {result.headline()}")
        print(result.headline())

    @no_var_expand
    @line_magic
    def verify(self, line: str) -> None:
        """%verify [--verdict ID] [--calls 20] [--timeout 60s]"""
        p = MagicParser("%verify", _VERIFY_USAGE)
        p.add_argument("--verdict")
        p.add_argument("--calls", type=int, default=20)
        p.add_argument("--timeout", default="60s")
        a = p.parse(line)
        if a.calls < 1:
            p.error("--calls: at least 1 call to judge the predicate on")
        verdict = self._verdict(a.verdict)
        from probebook.assistant.verify import verify_fix

        with user_errors("%verify: "):
            report = verify_fix(self.inv, verdict, calls=a.calls, timeout=parse_seconds(a.timeout, "--timeout"))
        if report.outcome != "gone":
            raise MagicError(f"%verify: {report.headline()}")
        print(report.headline())

    @no_var_expand
    @line_magic
    def postmortem(self, line: str) -> None:
        """%postmortem [-o OUT.ipynb] [--verdict ID] [--no-execute]"""
        p = MagicParser("%postmortem", _POSTMORTEM_USAGE)
        p.add_argument("-o", "--output", default="postmortem.ipynb")
        p.add_argument("--verdict")
        p.add_argument("--no-execute", action="store_true")
        a = p.parse(line)
        if not a.output.endswith(".ipynb"):
            p.error(f"-o {a.output}: write a notebook name ending in .ipynb")
        if os.path.exists(a.output):
            raise MagicError(f"%postmortem: {a.output} exists; give another name with -o, or remove it first")
        inv = self.inv
        verdict = self._verdict(a.verdict)
        from probebook.assistant.postmortem import write_postmortem

        # the notebook re-runs on a copy of the evidence as it is now: this kernel keeps writing its own
        store = os.path.splitext(a.output)[0] + ".duckdb"
        with user_errors("%postmortem: "):
            inv.store.save_copy(store)
            write_postmortem(store, a.output, verdict.id, execute=not a.no_execute)
        print(f"{a.output} (its evidence: {store})")

    # ------------------------------------------------------------------ helpers
    def _verdict(self, wanted: Optional[str]) -> Verdict:
        verdicts = Journal(self.inv.store).verdicts()
        if not verdicts:
            raise MagicError("no verdict in this investigation yet; %investigate or %%assistant first")
        if wanted is None:
            return verdicts[-1]
        found = next((v for v in verdicts if v.id == wanted), None)
        if found is None:
            raise MagicError(f"no verdict {wanted}; this investigation has {', '.join(v.id for v in verdicts)}")
        return found

    def _remediation(self, name: str) -> Any:
        with user_errors("%contain: "):
            if ":" in name:
                return load_remediation(name, self.inv)
            if name not in self.shell.user_ns:
                raise MagicError(f"%contain: --remediation {name}: no such variable in the notebook (make one, e.g. "
                                 f"{name} = LabRemediation(lab))")
            return checked_remediation(self.shell.user_ns[name], name)
