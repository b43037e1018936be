"""The assistant's record in the investigation's DuckDB file: incidents, hypotheses, findings and
verdicts, one row each with an evidence-style id, so `%%sql` and the postmortem read them like any
other evidence.

>>> from probebook.evidence import EvidenceStore
>>> j = Journal(EvidenceStore())
>>> inc = j.open_incident(Incident("checkout 502s"))
>>> inc.id.startswith("inc:")
True
>>> j.finding(inc, Finding("alerts", "2 alerts firing", ["alert:HighErrorRate:1"])).id.startswith("find:")
True
>>> j.store.sql("SELECT tool, summary FROM assistant_findings").rows()
[('alerts', '2 alerts firing')]
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import List, Optional

from probebook.evidence import EvidenceStore
from probebook.evidence.schema import sql_list

from .model import Finding, Hypothesis, Incident, Verdict

__all__ = ["Journal", "TABLES"]

TABLES = {
    "assistant_incidents": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, title VARCHAR, body JSON",
    "assistant_hypotheses": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, incident VARCHAR, service VARCHAR, "
                            "locus VARCHAR, status VARCHAR, statement VARCHAR, body JSON",
    "assistant_findings": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, incident VARCHAR, tool VARCHAR, "
                          "summary VARCHAR, evidence JSON",
    "assistant_verdicts": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, incident VARCHAR, kind VARCHAR, "
                          "service VARCHAR, locus VARCHAR, cause VARCHAR, body JSON",
    # containment (containment.py): one row per proposal decided, with what was done and the check after
    "assistant_actions": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, incident VARCHAR, verdict VARCHAR, "
                         "action VARCHAR, service VARCHAR, decision VARCHAR, outcome VARCHAR, body JSON",
    # fix validation (fixcheck.py): one row per candidate fix replayed on production's calls
    "assistant_fix_validations": "evidence_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, verdict VARCHAR, validated BOOLEAN, "
                                 "summary VARCHAR, body JSON",
}


class Journal:
    """Writes the assistant's model objects into `store` (tables created on first use)."""

    def __init__(self, store: EvidenceStore) -> None:
        self.store = store
        self._n = itertools.count(1)
        self._lock = threading.Lock()
        self._stamp = f"{int(time.time() * 1000) % 10**9:x}"
        for table, cols in TABLES.items():
            store.write(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")

    def _id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}:{self._stamp}:{next(self._n)}"

    def open_incident(self, incident: Incident) -> Incident:
        incident.id = incident.id or self._id("inc")
        self.store.write("INSERT OR REPLACE INTO assistant_incidents VALUES (?, to_timestamp(?), ?, ?)",
                         [incident.id, incident.opened_at, incident.title, json.dumps(incident.to_dict())])
        self.store.add_timeline(f"incident opened: {incident.title}", source="assistant", ref=incident.id,
                                ts=incident.opened_at)
        return incident

    def hypothesis(self, incident: Incident, h: Hypothesis) -> Hypothesis:
        """Insert or update `h` (its id is kept across status changes)."""
        h.id = h.id or self._id("hyp")
        self.store.write("INSERT OR REPLACE INTO assistant_hypotheses VALUES (?, now(), ?, ?, ?, ?, ?, ?)",
                         [h.id, incident.id, h.service, h.locus, h.status, h.statement, json.dumps(h.to_dict())])
        return h

    def finding(self, incident: Incident, f: Finding) -> Finding:
        f.id = f.id or self._id("find")
        self.store.write("INSERT INTO assistant_findings VALUES (?, to_timestamp(?), ?, ?, ?, ?)",
                         [f.id, f.ts, incident.id, f.tool, f.summary, json.dumps(f.evidence)])
        return f

    def verdict(self, incident: Incident, v: Verdict) -> Verdict:
        v.id = v.id or self._id("verdict")
        self.store.write("INSERT OR REPLACE INTO assistant_verdicts VALUES (?, now(), ?, ?, ?, ?, ?, ?)",
                         [v.id, incident.id, v.kind, v.service, v.locus, v.cause, json.dumps(v.to_dict())])
        self.store.add_timeline(f"verdict: {v.headline()}", source="assistant", ref=v.id)
        return v

    def action(self, verdict: str, action: str, service: str, decision: str, outcome: str, body: dict) -> str:
        """A containment step decided on `verdict` (its id); answers the row's evidence id."""
        rows = self.store.sql("SELECT incident FROM assistant_verdicts WHERE evidence_id = "
                              + sql_list([verdict])).rows() if verdict else []
        eid = self._id("act")
        self.store.write("INSERT INTO assistant_actions VALUES (?, now(), ?, ?, ?, ?, ?, ?, ?)",
                         [eid, rows[0][0] if rows else None, verdict or None, action, service, decision, outcome,
                          json.dumps(body, default=str)])
        return eid

    def fix_validation(self, verdict: str, validated: bool, summary: str, body: dict) -> str:
        """A candidate fix replayed for `verdict` (its id); answers the row's evidence id."""
        eid = self._id("fixval")
        body = {**body, "id": eid}
        self.store.write("INSERT INTO assistant_fix_validations VALUES (?, now(), ?, ?, ?, ?)",
                         [eid, verdict or None, validated, summary, json.dumps(body, default=str)])
        return eid

    def incident_of(self, verdict: str) -> Optional[Incident]:
        """The incident verdict `verdict` (its id) answered, or None."""
        rows = self.store.sql("SELECT i.body FROM assistant_incidents i JOIN assistant_verdicts v ON v.incident = "
                              "i.evidence_id WHERE v.evidence_id = " + sql_list([verdict])).rows()
        return Incident.from_dict(json.loads(rows[0][0])) if rows else None

    def verdicts(self) -> List[Verdict]:
        rows = self.store.sql("SELECT body FROM assistant_verdicts ORDER BY ts").rows()
        return [Verdict.from_dict(json.loads(r[0])) for r in rows]
