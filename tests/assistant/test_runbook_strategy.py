"""The runbook strategy: the assistant picks, by its metadata, the runbook that covers an alert open now, runs
it in a kernel with the alert's name and labels, and puts its decisions on the investigation's timeline
(context, never proof). The runbook is written here, as a user would write one."""

import nbformat

from probebook.assistant import Assistant
from probebook.assistant.model import Alert
from probebook.session import Investigation


def _runbook(folder, name, alerts, decision_source):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('alert = ""\nlabels = {}\nvolume_floor = 0.9')
    params.metadata["tags"] = ["parameters"]
    decide = nbformat.v4.new_code_cell(decision_source)
    decide.metadata["tags"] = ["decision"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params, decide]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["probebook"] = {"runbook": {"title": name, "alerts": alerts}}
    nbformat.write(nb, str(folder / f"{name}.ipynb"))


def test_the_runbook_for_the_open_alert_runs_with_its_labels_and_its_decisions_reach_the_timeline(tmp_path, jupyter_home):
    books = tmp_path / "runbooks"
    books.mkdir()
    _runbook(books, "cpu", ["HighCpu"], 'print("decision: not this one")')
    _runbook(books, "disk", ["DiskFull", "DiskFilling"],
             'print(f"decision: {alert} on {labels[\'volume\']}: free space above {volume_floor:.0%} first")')
    inv = Investigation()
    try:
        firing = [Alert("HighErrorRate", {"service": "gateway"}), Alert("DiskFull", {"volume": "archive"})]
        out = tmp_path / "run.ipynb"
        result = Assistant(inv).run_runbook(str(books), firing, parameters={"volume_floor": 0.75}, out=str(out))
        assert result is not None and result.runbook.title == "disk" and not result.failed, result
        assert result.decisions == ["decision: DiskFull on archive: free space above 75% first"]
        assert out.is_file()  # the run, with its outputs, for a look
        rows = inv.sql("SELECT source, text, ref FROM timeline WHERE source = 'runbook'").rows()
        assert rows == [("runbook", "runbook disk: decision: DiskFull on archive: free space above 75% first",
                         str(out))]
        # no runbook covers an alert: nothing runs, nothing is said
        assert Assistant(inv).run_runbook(str(books), [Alert("HighLatency", {})]) is None
        assert inv.sql("SELECT count(*) FROM timeline WHERE source = 'runbook'").rows()[0][0] == 1
    finally:
        inv.close()
