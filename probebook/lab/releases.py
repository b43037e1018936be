"""Code versions of the shop: a release is a directory holding the ``shop`` package as shipped.

The baseline release is the package in probebook/lab/shop. Another version is the baseline plus a
scenario's changes: text edits (``find`` -> ``replace``, each must match exactly once) and files
copied over from the scenario's own code folder. A service is deployed by restarting it on a release.

>>> import tempfile
>>> rel = build_release(tempfile.mkdtemp(), "orders", "2.8.0",
...                     [Edit("shop/pricing.py", "(1 - rate)", "(1 - rate / 100)")])
>>> "(1 - rate / 100)" in open(rel + "/shop/pricing.py").read()
True
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Optional, Sequence

from probebook.errors import ScenarioError


__all__ = ["Edit", "build_release", "SHOP_SOURCE"]

SHOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shop")


@dataclass(frozen=True)
class Edit:
    """Replace the one occurrence of `find` in `file` (a path inside the release, e.g. shop/orders.py)."""

    file: str
    find: str
    replace: str


def build_release(releases_dir: str, service: str, version: str, edits: Sequence[Edit] = (),
                  overlay: Optional[str] = None) -> str:
    """Write ``<releases_dir>/<service>/<version>/shop`` and answer the release directory."""
    root = os.path.join(releases_dir, service, version)
    if os.path.isdir(root):
        shutil.rmtree(root)
    shutil.copytree(SHOP_SOURCE, os.path.join(root, "shop"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if overlay:
        if not os.path.isdir(overlay):
            raise ScenarioError(f"code folder {overlay} does not exist; create it or drop 'code' from the deploy")
        shutil.copytree(overlay, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for edit in edits:
        path = os.path.normpath(os.path.join(root, edit.file))
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            raise ScenarioError(f"deploy {service} {version}: edit of {edit.file}: no such file in the release "
                                f"(paths look like shop/orders.py)")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        count = text.count(edit.find)
        if count != 1:
            raise ScenarioError(f"deploy {service} {version}: edit of {edit.file}: the text to find occurs "
                                f"{count} times, it must occur once: {edit.find[:60]!r}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text.replace(edit.find, edit.replace))
    return root
