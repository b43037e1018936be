"""Redaction by name: the cost of checking one dict key, before and after name matching was made linear.

    python -m bench.redaction_names [--sizes 1000,10000,40000] [--rounds 3]

Every captured dict key and field name is checked against the sensitive identifiers on the host's
thread. The matcher used to build every word-aligned suffix of the name (quadratic in its words); a
client can POST a JSON body with one long camelCase key (`"aB" * n`) to a probed endpoint. This runs
the shipped `RedactionRules.is_redacted_name` and that earlier algorithm (`_quadratic`, kept here as
the baseline) on the same keys in the same process, plus an ordinary name (`user_id`), and prints one
JSON object: the median seconds a check takes per key size, and the ratio earlier / shipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List

from probebook.agent.capture.redaction import _WORD, RedactionRules, RedactionConfig, normalize_identifier


def _quadratic(rules: RedactionRules) -> Callable[[str], bool]:
    """The name matcher before the change: every word suffix of the whole name."""
    ids = rules.config.identifiers

    def match(name: str) -> bool:
        if normalize_identifier(name) in ids:
            return True
        words = [w.lower() for w in _WORD.findall(name)]
        for i in range(len(words)):
            suffix = "".join(words[i:])
            if suffix in ids or suffix.rstrip("0123456789") in ids:
                return True
        return False
    return match


def _median_s(check: Callable[[str], bool], name: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        check(name)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: List[str] = None) -> Dict[str, object]:  # type: ignore[assignment]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,40000", help="key lengths in characters")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rules = RedactionRules(RedactionConfig())
    shipped = rules._match_name  # the matcher itself, past the cache of short names
    before = _quadratic(rules)
    out: Dict[str, object] = {"rounds": args.rounds, "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")] + [0]:
        name = "aB" * (size // 2) if size else "user_id"
        assert shipped(name) == before(name)  # the same answer
        a, b = _median_s(before, name, args.rounds), _median_s(shipped, name, args.rounds)
        out["sizes"][str(size or "user_id")] = {"before_s": a, "shipped_s": b, "ratio": round(a / b, 1) if b else None}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
