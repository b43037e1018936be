"""Mutation testing of the agent's core with mutmut: the score per module, and the mutants that survived.

    python bench/mutation.py run [PATH ...]     (what `make mutation` runs; PATHs: modules to mutate)
    python bench/mutation.py report             (the scores of the last run, from ./mutants)

mutmut copies the tree into `mutants/`, changes one thing at a time in the modules `[tool.mutmut]
only_mutate` lists in pyproject.toml (an operator, a constant, a condition), and runs the unit and
conformance tests that reach the changed function (`pytest_add_cli_args_test_selection`). A mutant is
killed when a test fails (or the run times out); it survived when every test passed, which means either a
behaviour no test checks or a change that behaves the same (an equivalent mutant). The score is killed /
checked, per module. Writes bench/results/mutation.json and prints a Markdown table for docs/testing.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTMUT = os.path.join(os.path.dirname(sys.executable), "mutmut")
KILLED = ("killed", "timeout")  # a mutant that makes a test hang is caught too
UNCHECKED = ("not checked", "skipped", "no tests")


def _module_glob(path: str) -> str:
    """probebook/agent/expr/*.py -> probebook.agent.expr.*: the names mutmut gives the mutants there."""
    name = path[:-3] if path.endswith(".py") else path
    return name.replace(os.sep, ".").replace("*", "") + "*"


def results() -> Dict[str, Dict[str, List[str]]]:
    """module -> status -> mutant names, from `mutmut results --all true`."""
    out = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    by_module: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for line in out.splitlines():
        m = re.match(r"\s*([\w.]+?)\.x[_\u01c1].*?__mutmut_\d+: (.+)$", line.strip())
        if m:
            by_module[m.group(1)][m.group(2)].append(line.strip().split(":")[0])
    return by_module


def report() -> dict:
    table = {}
    for module, statuses in sorted(results().items()):
        checked = sum(len(v) for k, v in statuses.items() if k not in UNCHECKED)
        killed = sum(len(statuses.get(k, ())) for k in KILLED)
        table[module] = {"checked": checked, "killed": killed, "survived": len(statuses.get("survived", ())),
                         "score": round(killed / checked, 3) if checked else None,
                         "unchecked": sum(len(statuses.get(k, ())) for k in UNCHECKED),
                         "survivors": sorted(statuses.get("survived", ()))}
    print("| module | mutants checked | killed (timeouts included) | survived | score |")
    print("|---|---|---|---|---|")
    for module, row in table.items():
        score = f"{row['score'] * 100:.1f} %" if row["score"] is not None else "-"
        print(f"| `{module}` | {row['checked']} | {row['killed']} | {row['survived']} | {score} |")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "mutation.json"), "w") as fh:
        json.dump(table, fh, indent=1)
    print("survivors: mutmut show NAME (names in bench/results/mutation.json)")
    return table


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "report"):
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        names = [_module_glob(p) for p in sys.argv[2:]]
        # time budgets are not judged under mutmut's trampolines (tests/support.py: within_budget)
        env = dict(os.environ, PROBEBOOK_TIMING="off")
        subprocess.run([MUTMUT, "run", "--max-children", str(os.cpu_count() or 2)] + names, cwd=ROOT, check=False,
                       env=env)
    report()


if __name__ == "__main__":
    main()
