"""The live probe panel in a real ipykernel, seen through its comm messages on IOPub (what JupyterLab
receives): throttled to 10 updates a second, hits coalesced into each update, nothing sent from the
publisher's thread while a cell runs, and the buttons' messages acted on."""

from __future__ import annotations

import os
import queue
import re
import time
from typing import Any, Dict, List

import pytest
from jupyter_client.manager import start_new_kernel
from support import wait_for

from probebook.lab.sample import where

PANEL = "probebook.widgets.probe_panel.ProbePanel"
WIDGET = "application/vnd.jupyter.widget-view+json"


class Kernel:
    """A kernel client that keeps every IOPub message with its arrival time."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: List[Dict[str, Any]] = []

    def _drain(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.01, min(0.1, until - time.monotonic())))
            except queue.Empty:
                continue
            msg["arrived"] = time.monotonic()
            self.seen.append(msg)

    def execute(self, code: str, timeout: float = 30) -> List[Dict[str, Any]]:
        """Run a cell; the messages from busy to idle of that request."""
        start = len(self.seen)
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain(time.monotonic() + 0.05)
            mine = [m for m in self.seen[start:] if m["parent_header"].get("msg_id") == msg_id]
            if any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in mine):
                errors = [m["content"] for m in mine if m["msg_type"] == "error"]
                assert not errors, errors
                return self.seen[start:]
        raise AssertionError(f"cell did not finish in {timeout}s: {code!r}")

    def collect(self, seconds: float) -> None:
        self._drain(time.monotonic() + seconds)

    def updates(self, comm_id: str, since: float = 0.0) -> List[Dict[str, Any]]:
        return [m for m in self.seen if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                and m["content"]["data"].get("method") == "update" and m["arrived"] >= since]

    def send_custom(self, comm_id: str, content: Dict[str, Any]) -> None:
        """What the panel's JavaScript sends when a button is clicked (`model.send`)."""
        msg = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}})
        self.client.shell_channel.send(msg)


def _hits(update: Dict[str, Any]) -> int:
    return int(re.search(r'data-hits="(\d+)"', update["content"]["data"]["state"]["html"]).group(1))


def _start(home):
    env = {**os.environ, "HOME": str(home), "IPYTHONDIR": str(home / ".ipython"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    return start_new_kernel(kernel_name="python3", cwd=str(home), env=env)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    km, kc = _start(tmp_path_factory.mktemp("kernel-home"))
    try:
        yield Kernel(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def panel_id(kernel, sample):
    """The comm id of a live panel of a log probe on the busy sample service."""
    opened = kernel.execute(
        "%load_ext probebook\n%config Probebook.evidence_path = ':memory:'\n"
        f"%connect sample {sample.url} --token-file {sample.token_file}\n"
        f'%probe log sample {where("order.total =")} "total={{order.total}}" --as live\n')
    panels = [m["content"]["comm_id"] for m in opened if m["msg_type"] == "comm_open"
              and m["content"]["data"]["state"].get("_anywidget_id") == PANEL]
    assert len(panels) == 1
    return panels[0]


def test_updates_are_throttled_and_coalesced(kernel, panel_id):
    start = time.monotonic()
    kernel.collect(3.0)
    updates = kernel.updates(panel_id, since=start)
    # live (hits are the agents' counts, asked once a second), and at most 10 updates a second
    assert 2 <= len(updates) <= 32, len(updates)
    for first in updates:  # no second-long window holds more than 10 (+1 for a window edge)
        assert len([u for u in updates if 0 <= u["arrived"] - first["arrived"] < 1.0]) <= 11
    assert all(set(u["content"]["data"]["state"]) == {"html"} for u in updates)  # one message per refresh
    hits = [_hits(u) for u in updates]
    assert hits == sorted(hits) and hits[-1] > hits[0]
    # the service hits ~50 times a second: each new count carries many hits at once
    assert max(b - a for a, b in zip(hits, hits[1:])) >= 3, hits


def test_nothing_is_sent_while_a_cell_runs_then_one_coalesced_update(kernel, panel_id):
    kernel.collect(0.3)
    before = _hits(kernel.updates(panel_id)[-1])
    cell = kernel.execute("import time; time.sleep(1.5)")
    states = {m["content"]["execution_state"]: m["arrived"] for m in cell if m["msg_type"] == "status"
              and m["parent_header"].get("msg_type") == "execute_request"}
    busy_at, idle_at = states["busy"], states["idle"]
    # (a flush may slip in while the request starts, before the cell's code runs)
    sent = [m["arrived"] - busy_at for m in cell if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == panel_id and busy_at + 0.3 < m["arrived"] < idle_at]
    assert not sent, sent
    kernel.collect(0.5)
    after = kernel.updates(panel_id, since=idle_at)
    assert after, "the pending update did not go out when the cell ended"
    assert _hits(after[0]) - before >= 15  # the hits of 1.5 s (~50 a second) in the first update after the cell


def test_remove_button_message_removes_the_probe(kernel, panel_id):
    sent = time.monotonic()
    kernel.send_custom(panel_id, {"action": "remove", "alias": "live"})

    def htmls() -> List[str]:
        kernel.collect(0.2)
        return [u["content"]["data"]["state"]["html"] for u in kernel.updates(panel_id, since=sent)]

    removed = wait_for(lambda: [h for h in htmls() if ">removed<" in h], 5, every=0,
                       what="a panel update that shows the probe removed")
    assert any('data-action="remove"' not in h for h in removed), removed[-1:]
    out = kernel.execute("import probebook.kernel_ext as k; print(k.investigation().records['live'].removed)")
    assert "True" in "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")


def test_a_kernel_restarted_from_the_notebook_leaves_its_panels_saying_removed(sample, tmp_path):
    """Restart (or shut down) from the notebook: the probes leave the service and the panel's output is
    written once more, `removed`, before the kernel goes, so the notebook does not claim a live probe."""
    km, kc = _start(tmp_path)
    try:
        kernel = Kernel(kc)
        opened = kernel.execute(
            "%load_ext probebook\n%config Probebook.evidence_path = ':memory:'\n"
            f"%connect sample {sample.url} --token-file {sample.token_file}\n"
            f'%probe log sample {where("order.total =")} "restart={{order.total}}" --as doomed\n')
        shown = [m for m in opened if m["msg_type"] == "display_data" and "pb-probes" in
                 m["content"]["data"].get("text/html", "")]
        assert shown and ">emitting<" in shown[-1]["content"]["data"]["text/html"], [m["msg_type"] for m in opened]
        display_id = shown[-1]["content"]["transient"]["display_id"]
        start = len(kernel.seen)
        km.restart_kernel(now=False)  # a shutdown_request with restart, as JupyterLab's Restart sends
        kernel.collect(5.0)
        last = [m for m in kernel.seen[start:] if m["msg_type"] == "update_display_data"
                and m["content"]["transient"].get("display_id") == display_id]
        assert last, ("no last word from the panel before the kernel went",
                      [(m["msg_type"], m["content"].get("execution_state")) for m in kernel.seen[start:]])
        html = last[-1]["content"]["data"]["text/html"]
        assert 'data-status="removed"' in html and "emitting" not in html and "as of" not in html
        assert WIDGET not in last[-1]["content"]["data"]  # static: no widget that needs the dead kernel
        from probebook.session import Investigation

        inv = Investigation(":memory:")
        try:
            inv.connect("sample", sample.url, token_file=sample.token_file)
            left = [p for infos in inv.handles["sample"].probes().values() for p in infos
                    if "restart=" in str(p.spec.get("template"))]
            assert left == []  # and the probe left the service
        finally:
            inv.close()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
