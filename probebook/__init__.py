"""probebook: prove root causes with live, read-only probes in running Python services.

`pip install probebook` gives the agent (``probebook.agent``), stdlib only plus
``bytecode`` on Python <= 3.11. The notebook side comes with ``probebook[lab]``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
