"""probebook: prove root causes with live, read-only probes in running Python services.

`pip install probebook` gives the agent (``probebook.agent``), stdlib only plus
``bytecode`` on Python <= 3.11. The notebook side comes with ``probebook[lab]``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]


def load_ipython_extension(ipython):  # pragma: no cover - exercised through IPython in tests
    """`%load_ext probebook`: the magics and `%config Probebook.*` (needs `probebook[lab]`)."""
    from probebook.kernel_ext import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from probebook.kernel_ext import unload_ipython_extension as _unload

    _unload(ipython)
