"""JupyterLab in Debian's Chromium (Playwright): a notebook connects to the sample service running
under the agent, places a probe, and the probe panel's hit count visibly increases.

The screenshot stays in the test's tmp dir (jupyterlab.png)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest
from support import CHROMIUM, CHROMIUM_ARGS, required

from probebook.lab.procs import free_port, tail
from probebook.lab.sample import SampleService, where

pytestmark = required("Debian's chromium", os.path.exists(CHROMIUM), "apt-get install -y chromium; .ci/apt-packages")

KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === "idle" && w.content && w.content.widgets.length === 3);
}"""


def chromium(pw, profile, height: int):
    """Debian's Chromium, headless, with a fresh profile in `profile` (Playwright's own cannot install here)."""
    return pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                 headless=True, viewport={"width": 1400, "height": height})


def _notebook(path, svc) -> None:
    cells = ["%load_ext probebook\n%config Probebook.evidence_path = ':memory:'",
             f"%connect sample {svc.url} --token-file {svc.token_file}",
             f'%probe log sample {where("order.total =")} "subtotal={{subtotal}} discount={{discount}}" --as browser']
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free 127.0.0.1 port, every Jupyter directory in tmp; (url, token)."""
    root, home = tmp_path / "notebooks", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "IPYTHONDIR": str(home / ".ipython"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_PLATFORM_DIRS": "1"}
    news = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the panel
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    notebook = news.parent / "notebook-extension"
    notebook.mkdir()  # every cell in the page, as a long notebook read top to bottom (no virtual scrolling)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, cwd=str(root), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not start: {tail(str(log), 5)}")
            time.sleep(0.2)
    try:
        yield url, token, root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down, which remove their probes
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_probe_panel_hit_count_increases_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    with SampleService() as svc, sync_playwright() as pw:
        _notebook(root / "probe.ipynb", svc)
        profile = tmp_path / "chromium-profile"
        browser = chromium(pw, profile, 900)
        try:
            page = browser.new_page()
            page.goto(f"{url}/lab/tree/probe.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            hits = page.locator(".pb-panel.pb-probes .pb-hits").first
            hits.wait_for(timeout=60_000)
            first = int(hits.get_attribute("data-hits"))
            page.wait_for_function(
                "n => { const e = document.querySelector('.pb-panel.pb-probes .pb-hits');"
                " return e && parseInt(e.dataset.hits, 10) >= n + 20; }", arg=first, timeout=30_000)
            later = int(hits.inner_text())
            assert later >= first + 20  # what the user sees: the number in the panel went up
            assert page.locator(".pb-panel.pb-probes").get_by_text("emitting").count() == 1
            page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert (tmp_path / "jupyterlab.png").stat().st_size > 10_000
