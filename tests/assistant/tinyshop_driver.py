"""Drives tinyshop for tests outside its own: the assistant investigating /pay's 500s with customers on
it (kept out of tinyshop.py, whose source the assistant reads as the service's)."""

import tinyshop

from probebook.assistant import Alert, Assistant


def investigate_pay_500s(inv):
    """The assistant's verdict on 'POST /pay answers 500 for some customers', traffic running meanwhile."""
    api, stop, t = tinyshop.start("pay")
    try:
        return Assistant(inv).investigate("POST /pay answers 500 for some customers", wait_s=5,
                                          alerts=[Alert("HighErrorRate", {"service": "tinyshop", "route": "/pay"})])
    finally:
        stop.set()
        t.join()


def with_traffic(call, kind="pay"):
    """`call()` while tinyshop serves `kind` requests in a thread; its answer."""
    api, stop, t = tinyshop.start(kind)
    try:
        return call()
    finally:
        stop.set()
        t.join()
