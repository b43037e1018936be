"""What the panels render from captured values: escaped, with every cut or redaction marked."""

from __future__ import annotations

import pkgutil
import re

import pytest
from support import check_doctests, with_examples

import probebook.widgets
from probebook.widgets.render import badge, node_html, node_text


def test_captured_markup_is_shown_as_text_never_run():
    html = node_html("<img src=x onerror=alert(1)>", {"type": "str", "value": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>" not in badge("<b>down</b>") and "&lt;b&gt;" in badge("<b>down</b>")


def test_markers_say_what_capture_cut():
    node = {"type": "myapp.Order", "fields": {
        "token": {"type": "str", "not_captured": "redacted"},
        "items": {"type": "list", "elements": [{"type": "tuple", "not_captured": "depth", "size": 3}], "size": 500,
                  "truncated": True},
        "note": {"type": "str", "value": "gift " * 10, "truncated": True, "size": 400},
        "broken": {"type": "dict", "not_captured": "error", "error": "RuntimeError"}}}
    html = node_html("order", node)
    for marker in ("redacted", "depth", "truncated", "error: RuntimeError"):
        assert f'<span class="pb-mark">{marker}' in html, marker
    assert node_text(node["fields"]["items"]) == "list[500] (truncated)"
    assert node_text(node["fields"]["items"]["elements"][0]) == "tuple[3] (depth)"
    assert node_text({"type": "int", "value": 5}) == "5" and node_text({"type": "str", "value": "a"}) == "'a'"


# ---------------------------------------------------------------------- tables and charts (issue 21)
def _alerts_frame(n: int = 1):
    import datetime as dt

    import polars as pl

    now = dt.datetime.now(dt.timezone.utc)
    summary = "checkout p90 latency is 2.4 s, over its 500 ms objective for 5 minutes on every gateway instance"
    return pl.DataFrame({"evidence_id": [f"alert:{i:04d}9f3c2a71be04d5e6a7b8c9" for i in range(n)],
                         "status": ["firing"] * n, "name": ["CheckoutSlow"] * n, "service": ["gateway"] * n,
                         "severity": ["page"] * n, "summary": [summary] * n,
                         "started": [now - dt.timedelta(minutes=3)] * n, "fingerprint": ["ab12cd34ef56ab78"] * n})


def test_a_table_reads_like_a_console_not_a_repr():
    from probebook.widgets.tables import EvidenceTable, frame_html

    frame = _alerts_frame()
    html = frame_html(frame, "alerts")
    heads = re.findall(r"<th>([^<]*)</th>", html)
    assert heads == ["status", "name", "severity", "summary", "service", "started", "evidence_id", "fingerprint"]
    assert "datetime[" not in html and "str</" not in html and "&quot;firing&quot;" not in html  # no dtype row, quotes
    assert frame["summary"][0] in html  # the summary in full, never cut with …
    assert re.search(r'pb-badge pb-bad"[^>]*>firing<', html) and re.search(r'pb-badge pb-bad"[^>]*>page<', html)
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC">3m ago<', html)  # relative, exact on hover
    eid = frame["evidence_id"][0]
    assert f'<span class="pb-id-short">alert:0000…a7b8c9</span><span class="pb-id-full">{eid}</span>' in html
    assert '<div class="pb-table">' in html and "overflow-x: auto" in html  # wide tables scroll inside the output
    many = frame_html(_alerts_frame(60), "alerts")
    assert "showing the first 50 of 60 rows" in many and many.count("<tr>") == 51
    table = EvidenceTable.of(frame, "alerts")  # code reading `frame = %alerts` keeps a polars frame
    assert table.equals(frame) and table["status"].to_list() == ["firing"] and "showing" not in table._repr_html_()


def test_numbers_carry_the_unit_their_column_says():
    import polars as pl

    from probebook.widgets.tables import frame_html

    html = frame_html(pl.DataFrame({"p90_s": [0.0421], "size_bytes": [3 * 2 ** 20], "error_ratio": [0.031],
                                    "calls": [12345]}))
    for shown in ("42.1 ms", "3.00 MiB", "3.10 %", "12,345"):
        assert f">{shown}</td>" in html, shown


def test_a_promql_chart_has_a_unit_a_meaning_and_short_legend_names():
    import datetime as dt

    import polars as pl

    from probebook.widgets.plots import promql_figure

    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    rows = [{"evidence_id": f"p{i}{r}", "ts": t0 + dt.timedelta(seconds=15 * i), "metric": None,
             "series": f'{{route="{r}",service="gateway"}}', "route": r, "service": "gateway", "value": 0.2 + i / 100}
            for r in ("/api/cart", "/api/checkout") for i in range(4)]
    query = "histogram_quantile(0.9, sum by (le, route) (rate(http_request_duration_seconds_bucket[1m])))"
    fig = promql_figure(pl.DataFrame(rows), query, marks=[(t0 + dt.timedelta(seconds=20), "onset")],
                        x_range=(t0, t0 + dt.timedelta(minutes=1)))
    assert [d.name for d in fig.data] == ["/api/cart", "/api/checkout"]  # only the label that differs, no braces
    assert fig.layout.yaxis.title.text == "milliseconds" and fig.layout.yaxis.ticksuffix == " ms"
    assert fig.data[0].y[0] == 200.0  # values scaled to the unit shown
    assert fig.layout.title.text.startswith("p90 of http_request_duration_seconds by route")
    assert [a.text for a in fig.layout.annotations] == ["onset"] and fig.layout.shapes[0].x0 == t0 + dt.timedelta(
        seconds=20)
    rate = promql_figure(pl.DataFrame(rows), 'sum by (route) (rate(http_requests_total{code=~"5.."}[1m]))')
    assert rate.layout.yaxis.ticksuffix == "/s" and rate.layout.template.layout.hovermode == "x unified"


WIDGETS = with_examples(m.name for m in pkgutil.iter_modules(probebook.widgets.__path__, "probebook.widgets."))


@pytest.mark.parametrize("name", WIDGETS)
def test_the_examples_in_the_widgets_docs_run(name):
    check_doctests(name)


def test_every_frame_a_loaded_kernel_shows_is_an_evidence_table(shell):
    import polars as pl

    from probebook.widgets import EvidenceTable

    html_of = shell.display_formatter.formatters["text/html"]  # what a kernel sends as text/html
    was, html_of.enabled = html_of.enabled, True  # (a terminal shell shows only text)
    try:
        _frames_shown(shell, html_of)
    finally:
        html_of.enabled = was


def _frames_shown(shell, html_of):
    import polars as pl

    from probebook.widgets import EvidenceTable

    frame = pl.DataFrame({"b": [1], "status": ["firing"]})
    html = html_of(frame)
    assert 'class="pb-table"' in html and html.index("<th>b</th>") < html.index("<th>status</th>")  # order kept
    table = EvidenceTable.of(frame, "alerts")
    html = html_of(table)
    assert "alerts" in html and html.index("<th>status</th>") < html.index("<th>b</th>")
    shell.run_line_magic("unload_ext", "probebook")
    assert 'class="pb-table"' not in (html_of(frame) or "")  # polars' own again
    shell.run_line_magic("load_ext", "probebook")


def test_a_chart_also_comes_as_a_picture_for_readers_without_scripts():
    import datetime as dt
    import xml.dom.minidom

    import polars as pl

    from probebook.widgets.plots import promql_figure
    from probebook.widgets.svgchart import figure_svg

    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    rows = [{"evidence_id": f"p{i}{r}", "ts": t0 + dt.timedelta(seconds=15 * i), "metric": None, "series": r,
             "route": r, "value": 0.2 + i / 100} for r in ("/a", "/b") for i in range(6)]
    fig = promql_figure(pl.DataFrame(rows), "histogram_quantile(0.9, sum by (le, route) (rate(x_seconds_bucket[1m])))",
                        marks=[(t0 + dt.timedelta(seconds=30), "onset")], x_range=(t0, t0 + dt.timedelta(seconds=75)))
    doc = xml.dom.minidom.parseString(figure_svg(fig))  # a well-formed image
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
    assert len(doc.getElementsByTagName("polyline")) == 2 and {"/a", "/b", "onset", "milliseconds"} <= set(texts)
    assert texts[0].startswith("p90 of x_seconds by route") and "200 ms" in texts


def test_the_rate_is_the_agents_hits_over_its_window_and_starts_again_for_a_new_probe():
    from probebook.widgets.probe_board import _from_row, _rate

    polled = None
    for t, hits in ((0, 0), (1, 50), (5, 250), (10, 500), (11, 550)):
        polled = _from_row({"hits": hits, "status": "emitting"}, 1000.0 + t, 0.0, polled)
    assert _rate(polled.history, 1011.0) == 50.0  # (550 - 50) hits over the last 10 s of counts
    polled = _from_row({"hits": 20, "status": "emitting"}, 1012.0, 0.0, polled)  # extended: a new probe's count
    assert _rate(polled.history, 1012.0) is None  # not a negative rate, nor 0 while it hits
    polled = _from_row({"hits": 70, "status": "emitting"}, 1013.0, 0.0, polled)
    assert _rate(polled.history, 1013.0) == 50.0


def test_found_by_review_newest_rows_label_numbers_odd_column_names_and_a_partial_count():
    import polars as pl

    from probebook.widgets.plots import describe, unit_of
    from probebook.widgets.probe_board import _from_row, _rate
    from probebook.widgets.tables import frame_html

    lines = pl.DataFrame({"message": [f"line {i}" for i in range(80)]})
    html = frame_html(lines, newest=True)
    assert "showing the last 50 of 80 rows" in html and "line 79<" in html and "line 0<" not in html
    html = frame_html(pl.DataFrame({"line": [1234], "port": [8080], "calls": [12345], "seq": [123456]}))
    assert all(f">{v}</td>" in html for v in ("1234", "8080", "12,345", "123456")), html
    assert "<th>*</th>" in frame_html(pl.DataFrame({"*": [1], "^a$": [2]}))  # names, never patterns
    # a count summed without an instance that did not answer says nothing of the rate
    polled = None
    for t, hits, missing in ((0, 0, 0), (1, 100, 0), (2, 40, 1), (3, 300, 0)):
        polled = _from_row({"hits": hits, "status": "emitting", "missing": missing}, 1000.0 + t, 0.0, polled)
    assert _rate(polled.history, 1003.0) == 100.0
    query = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
    assert unit_of(query).name == "ratio" and describe(query).startswith('http_requests_total{code=~"5.."} / all')
