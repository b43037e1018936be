"""The quickstart, run whole in JupyterLab in Debian's Chromium and read as a person reads it: every
output drawn (no traceback, no "Error displaying widget", no polars repr), the probe panels, the
snapshot viewer, the evidence tables, the metric chart, the timeline and the assistant's verdict card.

Screenshots of its parts go to the test's tmp dir, or to $PROBEBOOK_SCREENSHOTS (docs/notebook.md
shows them: `PROBEBOOK_SCREENSHOTS=docs/images .venv/bin/python -m pytest tests/browser -k quickstart`).
"""

from __future__ import annotations

import os
import shutil

from test_console import RAN_ALL, _shots, running
from test_jupyterlab import chromium, lab, pytestmark  # noqa: F401  (lab: the fixture)

QUICKSTART = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "notebooks", "quickstart.ipynb")


def _cell(page, text):
    """The cell whose source starts with `text`."""
    return page.locator(".jp-Notebook .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=text)).first


def test_the_quickstart_reads_as_an_incident_console(lab, tmp_path):  # noqa: F811
    import nbformat

    shutil.copy(QUICKSTART, lab[2] / "quickstart.ipynb")
    cells = len(nbformat.read(str(lab[2] / "quickstart.ipynb"), as_version=4).cells)
    shots = _shots(tmp_path)
    with running(lab, tmp_path, "quickstart.ipynb", cells, height=1300) as page:
        page.wait_for_function(RAN_ALL, arg=cells, timeout=300_000)
        outputs = page.locator(".jp-OutputArea-output")
        text = "\n".join(outputs.all_inner_texts())
        for wrong in ("Traceback", "Error displaying widget", "shape: (", "UsageError"):
            assert wrong not in text, (wrong, text[:3000])
        assert page.locator(".pb-panel.pb-probes").count() >= 6  # each %probe cell, and %probe ls
        assert page.locator(".pb-panel.pb-snapshot").count() == 1
        assert page.locator(".pb-table").count() >= 3 and page.locator(".js-plotly-plot").count() == 1
        assert page.locator(".pb-panel.pb-timeline").count() == 1
        card = page.locator(".pb-verdict").first
        assert card.get_attribute("data-kind") == "proven", card.inner_text()
        # Run All ends with `%probe rm --all` and the unload: no panel still claims a live probe
        rows = page.locator(".pb-panel.pb-probes tr[data-status]")
        statuses = [rows.nth(i).get_attribute("data-status") for i in range(rows.count())]
        assert len(statuses) >= 6 and not {"emitting", "installed", "pending", "placed"} & set(statuses), statuses
        assert "as of" not in "".join(page.locator(".pb-panel.pb-probes").all_inner_texts())
        for name, start in (("quickstart-probes", "import time"), ("quickstart-snapshot", "%%snapshot"),
                            ("quickstart-sql", "SELECT 'logs'"), ("quickstart-chart", "totals.plot()"),
                            ("quickstart-timeline", "%mark"), ("quickstart-assistant", "%%assistant")):
            _cell(page, start).screenshot(path=os.path.join(shots, name + ".png"))
