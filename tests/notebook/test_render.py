"""What the panels render from captured values: escaped, with every cut or redaction marked."""

from __future__ import annotations

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
