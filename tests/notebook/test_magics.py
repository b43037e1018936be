"""The magics through a real IPython shell, against the sample service running under the agent."""

from __future__ import annotations

import json
import re

import pytest
from support import wait_for

from probebook import kernel_ext
from probebook.errors import SessionError
from probebook.kernel_ext import KernelSession, Probebook
from probebook.kernel_ext.args import MagicError
from probebook.lab.sample import SampleService, where

LINE = where("order.total =")  # in price(): order, subtotal, discount are set
RETURN = where("return order.total")


def _connect(run, svc, name="sample"):
    cell = run(f"%connect {name} {svc.url} --token-file {svc.token_file}")
    assert cell.error is None, cell.stderr
    return cell


def _hits(html: str) -> int:
    return int(re.search(r'data-hits="(\d+)"', html).group(1))


def test_connect_services_and_source(sample, run):
    cell = _connect(run, sample)
    assert "connected sample" in cell.stdout and "1 of 1 instances healthy" in cell.stdout
    services = run("%services").result.result
    assert services.frame["health"].to_list() == ["ok"]
    assert "pb-services" in services._repr_html_() and "sample: ok" in repr(services)
    line = int(LINE.rsplit(":", 1)[1])
    source = run(f"%source sample {LINE}-{line + 1}").stdout
    assert f"{line}      order.total = round(" in source and f"{line + 1}      return order.total" in source


def test_log_probe_panel_counts_hits_live(sample, run, shell):
    _connect(run, sample)
    cell = run(f'p = %probe log sample {LINE} "user={{order.user}} total={{subtotal}}" --as orders')
    assert cell.error is None, cell.stderr
    panel = shell.user_ns["p"]
    first = _hits(panel.html)
    # the publisher (not this thread) refreshes the panel while the service runs
    wait_for(lambda: _hits(panel.html) > first + 5, what=lambda: f"more than {first + 5} hits in {panel.html}")
    assert 'data-alias="orders"' in panel.html and "emitting" in panel.html
    cell = run("%%sql --out msgs\nSELECT message FROM logs ORDER BY seq LIMIT 3")
    assert cell.error is None, cell.stderr
    msgs = shell.user_ns["msgs"]["message"].to_list()
    assert len(msgs) == 3 and all(re.fullmatch(r"user=\d total=[\d.]+", m) for m in msgs), msgs
    assert cell.result.result is shell.user_ns["msgs"]  # displayed and bound
    assert run("%probe rm orders").stdout.strip() == "removed orders"
    wait_for(lambda: "removed" in panel.html, what=lambda: f"'removed' in {panel.html}")
    run('%mark "orders look fine"')
    timeline = run("%timeline").result.result.text()
    assert "probe orders (log) placed on sample" in timeline and "orders look fine" in timeline
    assert kernel_ext.investigation().sql("SELECT count(*) AS n FROM logs")["n"][0] >= first + 5


def test_every_kind_of_probe_and_a_metric_plot(sample, run, shell):
    _connect(run, sample)
    for line in (f"totals = %probe metric sample {RETURN} --metric order_total=order.total",
                 "%probe span sample probebook.lab.sample:price --as price_span",
                 "%probe exception sample probebook.lab.sample:handle --as declined",
                 f'%probe snapshot sample {LINE} --capture "order.id, subtotal" --max-hits 2 --as snaps'):
        cell = run(line)
        assert cell.error is None, (line, cell.stderr)
    inv = kernel_ext.investigation()
    wanted = {"metrics": 5, "spans": 5, "exceptions": 1, "snapshots": 2}
    wait_for(lambda: all(inv.store.count(t) >= n for t, n in wanted.items()), 15,
             what=lambda: f"{wanted} rows; stored {({t: inv.store.count(t) for t in wanted})}")
    exc = run("%%sql\nSELECT exc_type, frames FROM exceptions LIMIT 1").result.result
    assert exc["exc_type"].to_list() == ["ValueError"] and '"function": "handle"' in exc["frames"][0]
    snap = inv.sql("SELECT expressions FROM snapshots LIMIT 1")["expressions"][0]
    assert set(json.loads(snap)) == {"order.id", "subtotal"}
    fig = shell.user_ns["totals"].plot()
    assert len(fig.data) == 1 and len(fig.data[0].y) >= 5 and min(fig.data[0].y) > 0
    rows = {r.alias: r for r in kernel_ext.current_session().board.rows()}
    assert set(rows) == {"metric1", "price_span", "declined", "snaps"}
    assert rows["price_span"].last.startswith("price ") and rows["declined"].last.startswith("ValueError: 'order ")
    listing = run("%probe ls").result.result
    assert [r.alias for r in listing.rows] == ["metric1", "price_span", "declined", "snaps"]
    with pytest.raises(ValueError, match="no metric probe"):
        kernel_ext.current_session().probe_panel(["declined"]).plot()


def test_snapshot_cell_waits_shows_viewer_and_binds(sample, run, shell):
    _connect(run, sample)
    cell = run(f'%%snapshot sample {LINE} --when "order.user == 7" --hits 2 --wait 20s --out snap\n'
               "order\n# a comment line is skipped\ndiscount, subtotal * (1 - discount)\n")
    assert cell.error is None, cell.stderr
    result = shell.user_ns["snap"]
    assert not result.timed_out and len(result.snapshots) == 2
    assert [v["discount"] for v in result.values] == [0.25, 0.25]
    progress = [o.data["text/plain"] for o in cell.outputs if "snapshot at" in o.data.get("text/plain", "")]
    assert progress[0].startswith("[waiting]") and progress[-1].startswith("[done]") and "2 of 2" in progress[-1]
    viewer = cell.result.result
    assert viewer.result is result
    html = viewer.html
    for shown in ("stack (", "payment_token", "redacted", "truncated", "depth", "copy as JSON", "subtotal * (1 - discount)"):
        assert shown in html, shown
    copied = json.loads(viewer.to_json(1))
    assert copied["evidence_id"] == result.evidence_ids[1] and copied["expressions"]["discount"]["value"] == 0.25
    assert "tok_" not in html  # the secret was never read
    rows = kernel_ext.current_session().board.rows([result.alias])
    assert rows[0].status == "removed"
    # the listing counts what the viewer shows: the agents' last word, given as the probe was removed
    listed = {r.alias: r for r in run("%probe ls").result.result.rows}[result.alias]
    assert listed.status == "removed" and listed.emitted >= 2 and listed.hits >= listed.emitted, listed


def test_a_capped_probe_says_what_its_cap_counted(sample, run):
    """max_hits counts emitted events: a panel that says "max_hits reached (3)" shows 3 emitted beside
    the hits, and every hit that emitted nothing is counted as declined."""
    _connect(run, sample)
    cell = run(f'%probe snapshot sample {LINE} --capture "order.id" --max-hits 3 --rate 2 --as capped')
    assert cell.error is None, cell.stderr
    board = kernel_ext.current_session().board

    def disabled():
        board.poll(force=True)
        row = board.rows(["capped"])[0]
        return row if row.status == "disabled" else None

    row = wait_for(disabled, 20, what=lambda: board.rows(["capped"]))
    assert row.reason == "max_hits reached (3)" and row.emitted == 3, row
    declined = sum(int(n) for n in re.findall(r"(\d+) (?:rate-limited|failed)", row.declined))
    assert row.hits == row.emitted + declined, row  # every hit accounted for, none beyond the cap unexplained
    html = run("%probe ls").result.result.html
    assert re.search(r'data-hits="\d+"[^<]*</span><div class="pb-note pb-declined">3 emitted', html), html


def test_snapshot_that_never_hits_ends_without_error(sample, run, shell):
    _connect(run, sample)
    cell = run(f'%%snapshot sample {LINE} --when "order.user == 99" --wait 1s --out nothing\norder.id')
    assert cell.error is None, cell.stderr
    assert shell.user_ns["nothing"].timed_out and shell.user_ns["nothing"].snapshots == []
    assert "no snapshot arrived" in cell.result.result.html


def test_pending_holds_a_file_the_service_has_nowhere(sample, run):
    _connect(run, sample)
    cell = run("%probe log sample lab/written_later_pb.py:3 x --pending --as later")
    assert cell.error is None, cell.shown
    row = run("%probe ls").result.result.rows[0]
    assert (row.alias, row.status) == ("later", "pending")
    assert "no file ending with it was found on sys.path (pending: true)" in row.reason
    assert run("%probe rm later").stdout.strip() == "removed later"


BAD = [
    ("%probe nope sample a.py:1", "unknown kind 'nope'"),
    (f"%probe log nosuch {LINE} x", "unknown service 'nosuch'; connected: sample"),
    ("%probe log sample lab/sample.py:1 x", "holds no code"),
    ("%probe log sample lab/sampel.py:9 x",
     "lab/sampel.py is in no loaded module and no file on sys.path ends with it; closest loaded: lab/sample.py"),
    (f"%probe log sample {LINE} x --when \"__import__('os')\"", "not allowed"),
    (f"%probe log sample {LINE} x --colour red", "unrecognized arguments: --colour red"),
    (f"%probe log sample {LINE} x --ttl banana", "ttl: expected a duration"),
    (f"%probe metric sample {LINE} --metric total:median=x", "--metric 'total:median=x'"),
    (f'%probe log sample {LINE} "unclosed', "No closing quotation"),
    (f"%probe log sample {LINE}", "template: a log probe needs a template"),
    (f"%probe span sample {LINE} extra words", "unexpected words 'extra words'"),
    (f"%probe log sample {LINE} x --max-hits many", "invalid int value: 'many'"),
    ("%probe rm nosuch", "no probe 'nosuch'"),
    ("%probe rm", "name the probes to remove, or --all"),
    ("%probe", "usage: %probe log|snapshot"),
    ("%%sql\nSELEC nonsense", "syntax error"),
    ("%%sql --out 1x\nSELECT 1", "--out '1x': expected a Python variable name"),
    ("%%sql\n  ", "the cell body is the query"),
    ("%source sample lab/sample.py:9-3", "lines 9-3"),
    ("%source sample nosuch.py", "nosuch.py"),
    (f"%%snapshot sample {LINE} --wait banana\norder", "wait: expected a duration"),
    ("%connect onlyname", "expected a service NAME"),
    ("%connect --redis redis://127.0.0.1:1", "--redis takes --service NAME"),
    ("%connect other http://127.0.0.1:9 --token-file {token}", "cannot connect to other"),
    ("%connect other {url} --token-file /nonexistent/tokens", "token file /nonexistent/tokens"),
    ("%mark", "mark needs text"),
    ("%services now", "%services takes no arguments"),
]


@pytest.mark.parametrize("line, expected", BAD, ids=[b[0].split("\n")[0][:40] for b in BAD])
def test_bad_input_is_a_one_line_usage_error(sample, run, line, expected):
    _connect(run, sample)
    cell = run(line.replace("{token}", sample.token_file).replace("{url}", sample.url))
    assert isinstance(cell.error, MagicError) and not cell.result.success, (cell.error, cell.shown)
    lines = [x for x in cell.shown.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), cell.shown
    assert expected in lines[0], lines[0]
    assert "Traceback" not in cell.stdout + cell.stderr


def test_dead_service_shows_down_and_keeps_its_evidence(run, shell, tmp_path):
    svc = SampleService(name="doomed").start()
    try:
        _connect(run, svc, "doomed")
        assert run(f"%probe metric doomed {RETURN} --metric t=order.total --as t").error is None
        inv = kernel_ext.investigation()
        wait_for(lambda: inv.store.count("metrics") >= 10, what="10 stored metrics")
        svc.kill(0)
        stored = inv.store.count("metrics")
        board = kernel_ext.current_session().board
        wait_for(lambda: board.rows()[0].health.startswith("down"), 15, what=lambda: f"down in {board.rows()}")
        listing = run("%probe ls")  # no error in every cell: the panel says it
        assert listing.error is None and "down: " in listing.result.result.html
        assert listing.result.result.rows[0].hits >= stored
        assert run("%services").result.result.frame["health"].to_list() == ["down"]
        cell = run(f"%probe log doomed {LINE} x")
        assert isinstance(cell.error, MagicError) and len(cell.shown.strip().splitlines()) == 1
        assert run("%%sql\nSELECT count(*) AS n FROM metrics").result.result["n"][0] >= stored
        assert run("%probe rm --all").stdout.strip() == "removed t"
        run("%unload_ext probebook")  # closes the evidence file
        from probebook.evidence import EvidenceStore

        reopened = EvidenceStore(str(tmp_path / "evidence.duckdb"))
        assert reopened.count("metrics") >= stored
        reopened.close()
    finally:
        svc.stop()


def test_config_traits_and_the_shared_investigation(sample, run, shell, tmp_path, monkeypatch):
    _connect(run, sample)
    run("%config Probebook.default_ttl = '2m'")
    run(f"%probe log sample {LINE} x --as short")
    inv = kernel_ext.investigation()
    assert inv.records["short"].spec["ttl"] == 120.0
    run("%config Probebook.default_ttl = 'soon'")
    cell = run(f"%probe log sample {LINE} x")
    assert isinstance(cell.error, MagicError) and "ttl: expected a duration such as 30s" in cell.shown
    run("%config Probebook.default_wait = 'later'")
    cell = run(f"%%snapshot sample {LINE}\norder.id")
    assert isinstance(cell.error, MagicError) and "--wait: expected a duration" in cell.shown
    assert run("%config Probebook").error is None
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "incident.ipynb"))
    assert KernelSession(config=Probebook()).evidence_path() == str(tmp_path / "incident.evidence.duckdb")
    monkeypatch.setenv("PROBEBOOK_EVIDENCE", ":memory:")
    assert KernelSession(config=Probebook()).evidence_path() == ":memory:"
    with pytest.raises(SessionError, match=r"^cannot open the evidence file .*: IO Error: .*; choose another with"):
        KernelSession(config=Probebook(evidence_path=str(tmp_path))).investigation()  # a folder


def test_extend_and_remove_buttons(sample, run, shell):
    _connect(run, sample)
    run(f"p = %probe log sample {LINE} x --ttl 30s --as short")
    panel = shell.user_ns["p"]
    inv = kernel_ext.investigation()
    before = inv.records["short"]
    panel._on_front_end_msg(panel, {"action": "extend", "alias": "short"}, [])  # what a click sends
    after = inv.records["short"]
    assert after.fleet_id != before.fleet_id and after.spec["ttl"] == 900.0 and panel.notice == ""
    live = [p for p in inv.handles["sample"].probes().popitem()[1] if p.status in ("installed", "emitting")]
    assert [p.id for p in live] == [after.fleet_id]  # the old probe went; one probe, fresh TTL
    panel._on_front_end_msg(panel, {"action": "remove", "alias": "short"}, [])
    assert inv.records["short"].removed and panel.notice == ""
    wait_for(lambda: "removed" in panel.html and 'data-action="remove"' not in panel.html,
             what=lambda: f"a removed probe without its remove button in {panel.html}")
    panel._on_front_end_msg(panel, {"action": "extend", "alias": "short"}, [])  # a stale button
    assert panel.notice.startswith("extend short: no live probe 'short' to extend")


def test_panels_render_without_a_kernel_in_nbconvert(sample, run, shell):
    """A saved notebook opened without widget state (nbconvert, GitHub) shows the panels as HTML."""
    import nbformat
    from nbconvert import HTMLExporter

    _connect(run, sample)
    panel = run(f'%probe log sample {LINE} "t={{order.total}}" --as fallback').result.result
    viewer = run(f"%%snapshot sample {LINE}\norder.id").result.result
    outputs = []
    for widget in (panel, viewer):
        data, _ = widget._repr_mimebundle_()
        assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(data)
        outputs.append(nbformat.v4.new_output("display_data", data=data))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%probe ...", outputs=outputs)])
    page, _ = HTMLExporter().from_notebook_node(nb)
    assert 'class="pb-panel pb-probes"' in page and 'data-alias="fallback"' in page
    assert 'class="pb-panel pb-snapshot"' in page and "order.id" in page


def test_a_cell_run_again_leaves_one_live_panel(sample, run, shell):
    _connect(run, sample)
    run(f"%probe log sample {LINE} x --as again")
    first = run("%probe ls").result.result
    second = run("%probe ls").result.result
    publisher = kernel_ext.current_session().publisher
    assert second in publisher._views and first not in publisher._views
    assert kernel_ext.current_session().probe_panel(["again"]) in publisher._views


def test_connect_a_fleet_through_redis(run, shell):
    from probebook.lab.redis_server import RedisServer

    with RedisServer() as redis, SampleService(name="fleet", count=2, broker=redis.url) as svc:
        line = f"%connect --redis {redis.url} --service fleet --token-file {svc.token_file}"
        cell = wait_for(lambda: (lambda c: c if "2 of 2 instances healthy" in c.stdout else None)(run(line)), 15,
                        what="both instances healthy")
        assert cell.error is None, cell
        assert run(f"p = %probe log fleet {LINE} x --as everywhere").error is None
        inv = kernel_ext.investigation()
        both = "SELECT count(DISTINCT instance_id) AS n FROM logs"
        wait_for(lambda: inv.sql(both)["n"][0] == 2, 15, what="events of both instances, through Redis")
        wait_for(lambda: shell.user_ns["p"].rows[0].hits >= 10, what="10 hits on the panel")
        assert run("%probe rm everywhere").stdout.strip() == "removed everywhere"


def test_a_probe_placed_on_some_instances_says_which_failed(run, shell):
    with SampleService(name="pair", count=2) as svc:
        cell = run(f"%connect pair {svc.port_dir} --token-file {svc.token_file}")
        assert "2 of 2 instances healthy" in cell.stdout, cell.stderr
        svc.kill(1)
        cell = run(f"p = %probe log pair {LINE} x --as half")
        assert cell.error is None, cell.stderr
        panel = shell.user_ns["p"]
        # the live instance may already have had a hit by the time it answers: installed or emitting
        assert re.search(r"(emitting|installed) on 1, failed on 1 of 2 instances \(first failure:|"
                         r"failed on 1, (emitting|installed) on 1 of 2 instances \(first failure:", panel.notice), \
            panel.notice
        assert "Connection refused" in panel.html  # shown from the start, not only after a refresh
