"""`probebook investigate` from a terminal against a real service under `probebook agent run`: the verdict
as JSON on stdout after the gate, progress on stderr, bad usage in one line."""

from __future__ import annotations

import json
import subprocess
import sys

from probebook.assistant.model import VERDICT_KINDS
from test_agent_run_support import ALICE, service  # noqa: F401


def test_the_verdict_is_json_on_stdout_and_the_evidence_stays_in_the_file(service, tmp_path):  # noqa: F811
    tokens = tmp_path / "agent-tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    out = tmp_path / "incident.duckdb"
    done = subprocess.run([sys.executable, "-m", "probebook.cli", "investigate", "the work route is slow",
                           "--connect", f"shop={service.url}", "--token-file", str(tokens), "--out", str(out),
                           "--budget", "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["kind"] in VERDICT_KINDS and verdict["id"].startswith("verdict:")
    assert out.exists() and done.stderr.strip()  # progress lines went to stderr
    # the file it left is what a postmortem is written from
    pm = subprocess.run([sys.executable, "-m", "probebook.cli", "postmortem", str(out), "--no-execute"],
                        capture_output=True, text=True, timeout=120)
    assert pm.returncode == 0 and pm.stdout.strip() == str(tmp_path / "incident-postmortem.ipynb"), pm.stderr
    assert verdict["id"] in (tmp_path / "incident-postmortem.ipynb").read_text()


def test_a_service_that_cannot_be_reached_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "probebook.cli", "investigate", "x", "--connect",
                           f"shop={tmp_path}/no-such-folder/"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("probebook investigate: error:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
