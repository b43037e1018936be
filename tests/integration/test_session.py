"""The investigation API against a real service running under `probebook agent run`."""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from support import wait_for

from probebook.errors import SpecError
from probebook.lab import minishop
from probebook.lab.procs import free_port
from probebook.session import Investigation, SessionError

TOKEN = "session-test-token-0001"


def _line(text: str) -> int:
    lines, start = inspect.getsourcelines(minishop.price_cart)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.fixture
def shop(tmp_path):
    """minishop under the agent: (service port, port-file dir, token file, process)."""
    port = free_port()
    script = tmp_path / "shop_main.py"
    script.write_text(textwrap.dedent(f"""
        from probebook.lab import minishop
        minishop.serve({port}).serve_forever()
    """))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"tester:{TOKEN}\n")
    ports = tmp_path / "ports"
    ports.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "probebook.cli", "agent", "run", "--name", "shop", "--port-file", str(ports),
         "--token-file", str(tokens), "--audit", str(tmp_path / "audit.log"), "--", sys.executable, str(script)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if os.listdir(ports):
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"shop did not start: {proc.stderr.read().decode()[-500:]}")
    yield port, str(ports), str(tokens), proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _traffic(port: int, users):
    for i, user in enumerate(users):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/checkout?user={user}&items=2&seed={i}", timeout=5).read()
        except urllib.error.HTTPError:
            pass


@pytest.fixture
def inv(tmp_path):
    investigation = Investigation(str(tmp_path / "evidence.duckdb"))
    yield investigation
    investigation.close()


def test_connect_probe_and_query_evidence(shop, inv):
    port, ports, tokens, _ = shop
    row = inv.connect("shop", ports, token_file=tokens)
    assert row["instances"] == 1 and row["health"] == "ok"
    line = _line("cart.total = round(")
    rec = inv.probe("log", "shop", f"lab/minishop.py:{line}", template="user={cart.user_id} discount={discount}",
                    alias="disc")
    assert rec.placed.ok, rec.summary
    _traffic(port, [13, 7])
    logs = wait_for(lambda: inv.sql("SELECT evidence_id, message FROM logs ORDER BY seq").rows()
                    if inv.store.count("logs") >= 2 else None, what="two stored log lines")
    assert [m for _, m in logs] == ["user=13 discount='15'", "user=7 discount=0.1"]
    assert all(eid.startswith("log:shop:") for eid, _ in logs)
    table = inv.probes()
    assert table.filter(table["alias"] == "disc")["hits"].to_list() == [2]
    assert "disc" in inv.remove("disc")
    assert "probe disc" in " ".join(inv.timeline()["text"].to_list())


def test_snapshot_waits_for_hits_and_binds_values(shop, inv):
    port, ports, tokens, _ = shop
    inv.connect("shop", ports, token_file=tokens)
    line = _line("cart.total = round(")
    seen = []

    import threading
    threading.Timer(0.5, _traffic, args=(port, [1, 13])).start()
    result = inv.snapshot("shop", f"lab/minishop.py:{line}", ["cart.user_id", "rate"],
                          when="isinstance(discount, str)", wait=15, progress=lambda n, want, left: seen.append(n))
    assert not result.timed_out
    assert result.values == [{"cart.user_id": 13, "rate": 15.0}]
    assert seen[0] == 0 and seen[-1] == 1
    (eid,) = result.evidence_ids
    assert inv.sql(f"SELECT count(*) AS n FROM snapshots WHERE evidence_id = '{eid}'")["n"].to_list() == [1]
    assert inv.probes().filter(inv.probes()["alias"] == result.alias)["status"].to_list() == ["removed"]


def test_dead_service_is_unhealthy_and_evidence_stays(shop, inv):
    port, ports, tokens, proc = shop
    inv.connect("shop", ports, token_file=tokens)
    line = _line("cart.total = round(")
    inv.probe("metric", "shop", f"lab/minishop.py:{line}", metric={"name": "priced"})
    _traffic(port, [1, 2, 3])
    wait_for(lambda: inv.store.count("metrics") >= 3, what="three stored metrics")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    row = wait_for(lambda: (lambda r: r if r["health"] == "down" else None)(inv.services().row(0, named=True)), 15,
                   what="the service down")
    assert row["health"] == "down" and row["problem"]
    assert inv.sql("SELECT count(*) AS n FROM metrics")["n"].to_list() == [3]
    with pytest.raises(SessionError) as err:
        inv.probe("log", "shop", f"lab/minishop.py:{line}", template="x")
    assert "\n" not in str(err.value)


def test_bad_input_is_refused_before_anything_is_sent(shop, inv):
    _, ports, tokens, _ = shop
    inv.connect("shop", ports, token_file=tokens)
    with pytest.raises(SessionError, match="unknown service 'nope'; connected: shop"):
        inv.probe("log", "nope", "a.py:1", template="x")
    with pytest.raises(SpecError, match="^ttl"):
        inv.probe("log", "shop", "lab/minishop.py:30", template="x", ttl="banana")
    with pytest.raises(SessionError, match="no code|holds no code|nearest"):
        inv.probe("log", "shop", "lab/minishop.py:1", template="x")
    with pytest.raises(SessionError, match="no token"):
        Investigation().connect("x", ports)
    with pytest.raises(SessionError):
        inv.sql("SELEC nonsense")
    assert inv.probes().height == 0
