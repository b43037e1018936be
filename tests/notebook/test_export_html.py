"""A notebook run headless (nbclient, as `jupyter nbconvert --execute` runs it, widget state saved) and
exported with `jupyter nbconvert --to html`, read offline in Debian's Chromium: the probe panels show
their last state (the final hit counts and status, not the ones of the moment they were first shown)
and the plotly chart is drawn, with every request that is not a file blocked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any, Dict, List

import nbformat
from support import CHROMIUM, CHROMIUM_ARGS, required

from probebook.lab.sample import where

pytestmark = required("Debian's chromium", os.path.exists(CHROMIUM), "apt-get install -y chromium; .ci/apt-packages")

LINE = where("order.total =")
WIDGET = "application/vnd.jupyter.widget-view+json"
WAIT = """\
import time
from probebook.kernel_ext import investigation

inv = investigation()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    probes = {r['alias']: r for r in inv.probes().iter_rows(named=True)}
    if all(probes[a]['status'] == 'disabled' for a in ('capped', 'totals')):
        break
    time.sleep(0.1)
time.sleep(1.5)  # the panels' next look at the agents (once a second) sees the probes ended
print({a: (r['status'], r['hits']) for a, r in probes.items()})"""


def _notebook(svc) -> nbformat.NotebookNode:
    cells = [
        f"%load_ext probebook\n%config Probebook.evidence_path = ':memory:'\n"
        f"%connect sample {svc.url} --token-file {svc.token_file}",
        "%probe ls",  # every probe of the investigation: live until it closes
        f'%probe log sample {LINE} "total={{order.total}}" --max-hits 40 --as capped',
        f"totals = %probe metric sample {LINE} --metric subtotal=subtotal --max-hits 25 --as totals\ntotals",
        WAIT,
        "totals.plot()",
        "%unload_ext probebook",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _outputs(cell) -> List[Dict[str, Any]]:
    return [dict(o.get("data", {})) for o in cell.outputs]


def test_exported_html_shows_last_panel_state_and_chart_offline(sample, home, tmp_path):
    from nbclient import NotebookClient
    from playwright.sync_api import sync_playwright

    nb = _notebook(sample)
    seen: Dict[int, List[List[Dict[str, Any]]]] = {}  # cell index -> every cell's outputs as it ended

    def executed(cell, cell_index, **_):
        seen[cell_index] = [_outputs(c) for c in nb.cells]

    client = NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            on_cell_executed=executed)
    client.execute()
    path = tmp_path / "probes.ipynb"
    nbformat.write(nb, str(path))
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})  # what nbclient saves

    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)], check=True,
                   capture_output=True, timeout=60, cwd=str(tmp_path))
    page_path = tmp_path / "probes.html"

    blocked = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                        headless=True, viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.route("**/*", offline)
            page.goto(page_path.as_uri(), wait_until="load")
            for title, status in (("probe capped", "disabled"), ("probe totals", "disabled"), ("probes", "removed")):
                panel = page.locator(".pb-panel.pb-probes").filter(
                    has=page.locator(".pb-title", has_text=re.compile(f"^{title}$")))
                assert panel.count() == 1 and panel.is_visible(), f"no panel {title!r} to see"
                for alias, cap in (("capped", 40), ("totals", 25)):
                    if title != "probes" and not title.endswith(alias):
                        continue
                    row = panel.locator(f'tr[data-alias="{alias}"]')
                    assert row.locator(".pb-hits").inner_text() == str(cap), (title, row.inner_text())
                    shown = row.locator("td").nth(2).inner_text()  # probe, where, status
                    assert shown.startswith(status), (title, shown)
                    assert status != "disabled" or f"max_hits reached ({cap})" in shown, shown
            trace = page.locator(".js-plotly-plot .main-svg .scatterlayer .trace")
            trace.first.wait_for(timeout=10_000)
            assert page.locator(".js-plotly-plot .scatterlayer .trace .points path").count() == 25
            assert len(page.locator(".js-plotly-plot .scatterlayer .trace .js-line").first.get_attribute("d")) > 20
            page.screenshot(path=str(tmp_path / "export.png"), full_page=True)
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert blocked, "the page asked nothing of the network (its CDN scripts): offline proved nothing"
    # what the reader saw is not what the panels showed first: no probes yet in the list, the capped
    # probe short of its cap; the two panels went static when their probes ended, before the close
    assert "no probes yet" in seen[1][1][0]["text/html"]
    assert int(re.search(r'data-hits="(\d+)"', seen[2][2][0]["text/html"])[1]) < 40
    assert [WIDGET in out for out in seen[4][2] + seen[4][3]] == [False, False]
    assert WIDGET in seen[4][1][0]  # the list of all probes is still live then
