"""JupyterLab in Debian's Chromium (Playwright): a `%%assistant` cell investigates a small service running
in the notebook's own kernel (tests/assistant/tinyshop.py, under an in-process agent). The view streams
its steps while the kernel stays idle, then shows the verdict card with its kind badge.

The screenshot stays in the test's tmp dir (assistant.png)."""

from __future__ import annotations

import os
import shutil

import nbformat

from test_jupyterlab import chromium, lab, pytestmark  # noqa: F401  (lab: the fixture)

TINYSHOP = os.path.join(os.path.dirname(__file__), os.pardir, "assistant", "tinyshop.py")

KERNEL_IDLE = """n => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === "idle" && w.content && w.content.widgets.length === n);
}"""


def _notebook(path) -> int:
    cells = ["%load_ext probebook\n%config Probebook.evidence_path = ':memory:'",
             "import os, sys\nsys.path.insert(0, os.getcwd())\nimport tinyshop\nfrom probebook.agent import Agent\n"
             "import probebook.kernel_ext\nprobebook.kernel_ext.investigation().attach('tinyshop', Agent())\n"
             "api, stop, thread = tinyshop.start('pay')",
             "%%assistant --wait 5s\nPOST /pay answers 500 for some customers"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return len(cells)


def test_assistant_cell_shows_its_verdict_card_in_jupyterlab(lab, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    shutil.copy(TINYSHOP, root / "tinyshop.py")
    cells = _notebook(root / "assistant.ipynb")
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        browser = chromium(pw, profile, 1400)
        try:
            page = browser.new_page()
            page.goto(f"{url}/lab/tree/assistant.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, arg=cells, timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            view = page.locator(".pb-panel.pb-assistant")
            view.wait_for(timeout=60_000)
            # the cell has ended and the kernel is free while the assistant works; steps stream in
            page.wait_for_function(
                "() => { const r = document.querySelector('.pb-assistant .pb-run');"
                " return r && r.dataset.state === 'running'"
                " && document.querySelectorAll('.pb-assistant .pb-steps li').length >= 2; }", timeout=60_000)
            page.wait_for_function(KERNEL_IDLE, arg=cells, timeout=30_000)
            assert view.get_by_role("button", name="Stop").count() == 1
            card = view.locator(".pb-verdict")
            card.wait_for(timeout=120_000)
            assert card.get_attribute("data-kind") == "proven", view.inner_text()
            kind = card.locator(".pb-badge").first
            assert kind.inner_text() == "proven" and "pb-ok" in kind.get_attribute("class")
            assert "Billing.discount_for" in card.inner_text()
            assert card.locator(".pb-sql").inner_text().startswith("%%sql\nSELECT * FROM snapshots WHERE evidence_id")
            assert view.get_by_role("button", name="Stop").count() == 0
            page.screenshot(path=str(tmp_path / "assistant.png"), full_page=True)
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert (tmp_path / "assistant.png").stat().st_size > 10_000
