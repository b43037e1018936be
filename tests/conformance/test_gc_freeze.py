"""A service that froze its objects with gc.freeze() (gunicorn --preload setups do, before forking workers)."""

import gc
import sys

from conformance_support import events


def test_a_probe_fires_in_functions_defined_before_gc_freeze(agent, tmp_path):
    """On <= 3.11 the probe's code is swapped into the functions that hold it, found through
    gc.get_referrers, which does not see frozen objects: the probe said installed and never fired."""
    (tmp_path / "frozen_shop.py").write_text(
        "def work(x):\n    y = x + 1\n    return y\n\n\n"
        "class Cart:\n    def total(self, n):\n        t = n * 2\n        return t\n\n"
        "    @staticmethod\n    def tax(n):\n        v = n + 3\n        return v\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import frozen_shop
        gc.freeze()
        for where, template in (("frozen_shop.py:2", "x={x}"), ("frozen_shop.py:8", "n={n}"),
                                ("frozen_shop.py:13", "tax={n}")):
            agent.add_probe({"kind": "log", "where": where, "template": template})
        assert frozen_shop.work(41) == 42
        assert frozen_shop.Cart().total(5) == 10
        assert frozen_shop.Cart.tax(4) == 7
        assert sorted(e.message for e in events(agent, "log")) == ["n=5", "tax=4", "x=41"]
    finally:
        gc.unfreeze()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("frozen_shop", None)
