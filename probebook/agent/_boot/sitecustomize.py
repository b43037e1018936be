"""Start the probebook agent at interpreter start, then run any other `sitecustomize`.

`probebook agent run` puts this directory first on PYTHONPATH, so every Python program it starts
(a script, ``python -m``, gunicorn or uvicorn and their workers) runs this before its own code.
Settings come from ``PROBEBOOK_*`` environment variables; ``PROBEBOOK_DISABLE=1`` turns it off.
Nothing here may stop the program: every failure is one line on stderr.
"""

import os
import sys


def _chain() -> None:
    """Run the `sitecustomize` this one shadows, as Python would have, under the same name."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _start() -> None:
    try:
        import probebook.agent.bootstrap as bootstrap
    except ImportError:
        # an interpreter without probebook installed: use the copy this file belongs to
        sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        import probebook.agent.bootstrap as bootstrap
    bootstrap.start()


_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.semaphore_tracker")


def _helper() -> bool:
    """Python's own bookkeeping processes (multiprocessing's resource tracker) run no app code: an
    agent there would only count as one more instance."""
    argv = list(getattr(sys, "orig_argv", None) or [])
    if not argv:
        try:
            with open("/proc/self/cmdline", "rb") as fh:
                argv = fh.read().decode("utf-8", "replace").split("\0")
        except OSError:
            return False
    code = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    return any(f"from {m} import" in code for m in _HELPERS)


def _boot() -> None:
    try:
        _chain()
    except Exception as exc:  # as site.py does for a failing sitecustomize: say so and go on
        print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback: {type(exc).__name__}: {exc}",
              file=sys.stderr)
    if os.environ.get("PROBEBOOK_DISABLE", "").strip() not in ("", "0") or _helper():
        return
    try:
        _start()
    except Exception as exc:
        print(f"probebook: agent not started: {type(exc).__name__}: {exc}", file=sys.stderr)


_boot()
