"""No probe answers a question about a secret (issue 17): a condition, captured expression or template
part that compares a text shaped like a secret with a guess must behave the same whether the guess is
right or wrong. Otherwise an operator with a token guesses a password one comparison at a time, reading
only which hits were filtered, emitted or failed.

Each expression below is placed with the right secret and, separately, with a wrong guess of the same
length, on a function whose local `link` holds a connection string with a password (redacted whole by its
shape, not by its name). Everything the agent reports about the two probes must be the same.
"""

from __future__ import annotations

import pytest

from conformance_support import events

from probebook.errors import ProbebookError

RIGHT = "postgres://app:s3cr3t-pw@db.internal/orders"
WRONG = "postgres://app:guesss-pw@db.internal/orders"  # same length: length is not what is asked


def _holder(link, n):
    kept = link  # at:oracle
    return kept, n


ORACLES = [
    "link == {G!r}", "link != {G!r}", "{G!r} == link", "link < {G!r}", "link >= {G!r}", "{G!r} > link",
    "link in [{G!r}]", "link in ({G!r},)", "link in {{{G!r}}}", "link in {{{G!r}: 1}}", "link not in [{G!r}]",
    "[link] == [{G!r}]", "(link, 1) == ({G!r}, 1)", "{{'k': link}} == {{'k': {G!r}}}", "{{link}} == {{{G!r}}}",
    "{{link: 1}} == {{{G!r}: 1}}", "[link] < [{G!r}]",
    "{{{G!r}: True}}[link]", "{{{G!r}: True}}.get(link, False)", "[{G!r}].count(link) == 1",
    "[{G!r}, link].index(link) == 0", "len({{link, {G!r}}}) == 1", "len({{link: 1, {G!r}: 2}}) == 1",
    "len({{link}} & {{{G!r}}}) == 1", "len({{link}} - {{{G!r}}}) == 0",
    "max(link, {G!r}) == link", "min([link, {G!r}]) == link", "sorted([link, {G!r}])[0] == link",
    "link + 'x' == {G!r} + 'x'", "str(link) == {G!r}", "link * 1 == {G!r}", "(link or 'x') == {G!r}",
    "link.startswith({G!r}[:20])", "{G!r}[15:24] in link", "link.find({G!r}[15:24]) >= 0",
    "link.count('s3cr3t') == 1", "link.replace({G!r}, '') == ''", "link.split('@')[0] == {G!r}.split('@')[0]",
    "link[15:24] == {G!r}[15:24]", "link.encode() == {G!r}.encode()", "[c for c in link] == list({G!r})",
    "any(c == 's' for c in link[15:])", "link.lower() == {G!r}", "link.strip() == {G!r}",
    "f'{{link}}' == {G!r}", "'%s' % link == {G!r}", "' '.join([link]) == {G!r}", "{G!r} in [link, 'x']",
]


def _outcome(agent, placement: str, expr: str) -> tuple:
    """What an operator sees of one placement: the refusal, or the probe's counts, status and events."""
    spec = {"kind": "log", "where": "conformance/test_oracles.py:" + str(_holder.__code__.co_firstlineno + 1)}
    if placement == "condition":
        spec.update(when=expr, template="hit")
    elif placement == "template":
        spec.update(template="v={" + expr + "}")
    else:
        spec.update(kind="snapshot", capture=[expr])
    try:
        probe = agent.add_probe(spec)
    except ProbebookError as exc:
        return ("refused", str(exc))
    for n in range(3):
        _holder(RIGHT, n)
    info = agent.get_probe(probe.id)
    seen = []
    for e in events(agent, spec["kind"]):
        d = e.to_dict()
        seen.append(d.get("message") or str(d.get("expressions")))
    agent.remove_probe(probe.id)
    return (info.status, info.hits, info.filtered, info.failed, info.emitted, seen)


@pytest.mark.parametrize("placement", ["condition", "template", "capture"])
@pytest.mark.parametrize("oracle", ORACLES)
def test_a_guess_at_a_secret_shaped_text_gets_the_same_answer_right_or_wrong(agent, oracle, placement):
    right = _outcome(agent, placement, oracle.format(G=RIGHT))
    wrong = _outcome(agent, placement, oracle.format(G=WRONG))
    strip = lambda o: tuple(str(x).replace(RIGHT, "G").replace(WRONG, "G") for x in o)  # noqa: E731
    assert strip(right) == strip(wrong), (right, wrong)


@pytest.mark.parametrize("oracle", ["link == {G!r}", "{G!r} == link", "link in ({G!r}, 'x')", "link in [{G!r}]",
                                    "[link] == [{G!r}]", "{{{G!r}: True}}.get(link, False)", "link.startswith({G!r})"])
def test_a_plain_text_still_compares(agent, oracle):
    """The positive control: the same comparisons of a text with no secret in it answer as Python does
    (a refusal of every comparison would pass the test above)."""
    plain = "https://db.internal/orders"
    spec = {"kind": "log", "where": "conformance/test_oracles.py:" + str(_holder.__code__.co_firstlineno + 1),
            "template": "hit"}
    right = agent.add_probe(dict(spec, when=oracle.format(G=plain)))
    wrong = agent.add_probe(dict(spec, when=oracle.format(G=plain + "x")))
    for n in range(3):
        _holder(plain, n)
    got = {p.id: (agent.get_probe(p.id).emitted, agent.get_probe(p.id).filtered, agent.get_probe(p.id).failed)
           for p in (right, wrong)}
    assert got == {right.id: (3, 0, 0), wrong.id: (0, 3, 0)}, got
