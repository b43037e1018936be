"""The symptom check after an action, against a real Prometheus evaluating a real rule: two alerts of one
rule (the flip gauge, one label value each) held before the action; one goes and the other stays. That is
`partly` (contained in part, said with which went and which holds), not `contained`, and not plain `still`
either: an alert that held before and went credits the action with that part."""

from __future__ import annotations

from support import wait_for

from probebook.assistant.model import Alert as Incoming
from probebook.assistant.symptom import alerts_now, check_symptom
from probebook.session import Investigation


def test_one_alert_gone_and_another_holding_is_contained_in_part(monitoring):
    flip = monitoring.target.flip
    alerts = [Incoming("TelemetryTestFlip", {"case": "part-a"}), Incoming("TelemetryTestFlip", {"case": "part-b"})]
    inv = Investigation(":memory:")
    try:
        inv.telemetry.configure(prometheus=monitoring.prometheus.url)
        flip.labels(case="part-a").set(1)
        flip.labels(case="part-b").set(1)
        before = wait_for(lambda: (lambda now: now if all(now.values()) else None)(alerts_now(inv, alerts)),
                          timeout=30, what="both flips to hold")
        flip.labels(case="part-a").set(0)  # the action undid one part
        check = check_symptom(inv, alerts, timeout=20, poll=1.0, before=before)
        assert check.outcome == "partly", check.to_dict()
        assert check.summary().startswith("contained in part: ")
        assert "TelemetryTestFlip{case=part-a} held before the action and went; TelemetryTestFlip{case=part-b} " \
               "still hold" in check.summary(), check.summary()
        assert [(a["labels"]["case"], a["holds"]) for a in check.alerts] == [("part-a", False), ("part-b", True)]
        unknown = check_symptom(inv, alerts, timeout=1, poll=1.0)  # nothing asked before: nothing to credit
        assert unknown.outcome == "still", unknown.to_dict()
    finally:
        flip.labels(case="part-a").set(0)
        flip.labels(case="part-b").set(0)
        inv.close()
