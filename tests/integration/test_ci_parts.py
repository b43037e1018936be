"""A green CI means every part was there: under CI=true (which `.ci/run` sets) a test whose part is missing
fails with the reason instead of skipping, a Python of 3.9-3.13 that is not found fails the conformance
run, and `.ci/apt-install` fails when it cannot install. Outside CI the same cases skip and say so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEEDS = '''
import support

pytestmark = support.required("the flux capacitor", False, "apt-get install -y flux-capacitor")


def test_uses_it():
    assert False, "never runs: the part is missing"
'''


def _env(ci: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return {**env, "CI": "true"} if ci else env


def _pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs.py").write_text(NEEDS)
    # the suite's own tests/conftest.py as a plugin (the test file is outside tests/, so not collected with it)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "conftest",
                           "--rootdir", ROOT, "-c", os.path.join(ROOT, "pyproject.toml"), str(tmp_path / "test_needs.py")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**_env(ci), "PYTHONPATH": os.path.join(ROOT, "tests")})


def test_a_missing_part_is_a_listed_skip_here_and_a_failure_under_ci(tmp_path):
    here = _pytest(tmp_path, ci=False)
    assert here.returncode == 0 and "1 skipped" in here.stdout, here.stdout[-1500:]
    assert "needs the flux capacitor (apt-get install -y flux-capacitor)" in here.stdout  # the -ra summary
    ci = _pytest(tmp_path, ci=True)
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout[-1500:]  # failed at its setup
    assert "CI=true and this test needs the flux capacitor" in ci.stdout
    assert "never runs" not in ci.stdout  # the body did not run


def test_a_python_not_found_fails_the_conformance_run_under_ci():
    make = ["make", "-s", "--no-print-directory", "test-conformance", "CONFORMANCE_PYTHONS=3.99"]
    here = subprocess.run(make, capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env(False))
    assert here.returncode == 0, here.stderr
    assert "python 3.99 not found, skipped" in here.stdout and "skipped, not found: 3.99" in here.stdout
    ci = subprocess.run(make, capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env(True))
    assert ci.returncode != 0 and "CI=true needs every one of 3.99" in ci.stderr, (ci.stdout, ci.stderr)


def test_apt_install_fails_under_ci_when_it_cannot_install(tmp_path):
    """A copy of `.ci/apt-install` whose list names a package that is not installed, on a PATH without
    apt-get: outside CI it says what is missing and goes on; under CI=true it fails."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(os.path.join(ROOT, ".ci", "apt-install"), tmp_path / ".ci" / "apt-install")
    (tmp_path / ".ci" / "apt-packages").write_text("# test\nprobebook-no-such-package\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "grep", "dpkg", "dpkg-query", "dirname", "id"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, tools / tool)
    script = [str(tools / "bash"), str(tmp_path / ".ci" / "apt-install")]
    for ci, code in ((False, 0), (True, 1)):
        ran = subprocess.run(script, capture_output=True, text=True, timeout=60,
                             env={**_env(ci), "PATH": str(tools)})
        assert ran.returncode == code, (ci, ran.returncode, ran.stderr)
        assert "missing Debian packages (install them as root): probebook-no-such-package" in ran.stderr
