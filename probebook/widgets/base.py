"""The one widget class every panel is: HTML rendered in Python, shown by a few lines of JavaScript.

The front end only draws `html`, counts TTLs down between updates (`data-ttl` seconds), sends
button clicks back (`data-action`) and copies JSON to the clipboard (`data-copy`). The same HTML
is the static fallback (`text/html`), so a notebook opened without a kernel, nbconvert and GitHub
show the panel. A panel is displayed with a display id, so `PanelOutputs` can write its output
again as it changes (the panel as it last was) and, once it cannot change, `freeze` it: from then
on its output is that HTML and text only, no widget view.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import anywidget
import traitlets

from .render import CSS

__all__ = ["HtmlPanel"]

_ESM = r"""
function fmt(s) {
  s = Math.max(0, Math.round(s));
  if (s >= 3600) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  if (s >= 60) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return s + "s";
}
function copy(text, button) {
  const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy as JSON"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, () => fallback()); }
  else { fallback(); }
  function fallback() {
    const area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); done(); } finally { area.remove(); }
  }
}
function render({ model, el }) {
  const root = document.createElement("div");
  el.appendChild(root);
  let drawnAt = Date.now();
  const tick = () => {
    for (const span of root.querySelectorAll("[data-ttl]")) {
      span.textContent = fmt(parseFloat(span.dataset.ttl) - (Date.now() - drawnAt) / 1000);
    }
  };
  const draw = () => { root.innerHTML = model.get("html"); drawnAt = Date.now(); tick(); };
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !root.contains(button)) return;
    if (button.dataset.copy !== undefined) {
      copy(model.get("copy_json")[parseInt(button.dataset.copy, 10)] || "", button);
    } else if (button.dataset.action) {
      button.disabled = true;
      model.send({ action: button.dataset.action, alias: button.dataset.alias || "" });
    }
  });
  model.on("change:html", draw);
  draw();
  // a view whose output was written again (update_display) is taken out of the page and a new one
  // drawn, without this one being told: it stops when it has been on the page and is now parentless
  let shown = false;
  const done = () => { clearInterval(timer); model.off("change:html", draw); };
  const timer = setInterval(() => {
    if (el.isConnected) shown = true;
    else if (shown && !el.parentNode) return done();
    tick();
  }, 1000);
  return done;
}
export default { render };
"""

Action = Callable[[str, str], Optional[str]]


def _styled(html: str) -> str:
    return f"<style>{CSS}</style>{html}"


class HtmlPanel(anywidget.AnyWidget):
    """A panel showing `html`; `copy_json` holds what the copy buttons put on the clipboard.

    `final` is set (by a live view's `compute`) when nothing the panel shows can change any more;
    `frozen` when its output has become static; `outputs` keeps its displays current (`PanelOutputs`)."""

    _esm = _ESM
    _css = CSS
    html = traitlets.Unicode("").tag(sync=True)
    copy_json = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._actions: Dict[str, Action] = {}
        self.final = False
        self.frozen = False
        self.display_id = ""  # given at the first display; every display of the panel shares it
        self.outputs: Any = None
        self.on_msg(self._on_front_end_msg)

    def text(self) -> str:
        """The plain-text form (terminals, logs, `text/plain`)."""
        return type(self).__name__

    def on_action(self, name: str, fn: Action) -> None:
        """Run `fn(action, alias)` when a button with ``data-action=name`` is clicked; the text it
        returns, if any, is shown as a notice (errors are shown, never raised into the kernel)."""
        self._actions[name] = fn

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: List[Any]) -> None:
        if not isinstance(content, dict):
            return
        fn = self._actions.get(str(content.get("action", "")))
        if fn is not None:
            fn(str(content.get("action")), str(content.get("alias", "")))

    def _repr_html_(self) -> str:
        """The static fallback: the panel as it is now, with its styles (no script needed)."""
        return _styled(self.html)

    def bundle(self, html: Optional[str] = None) -> Dict[str, Any]:
        """What an output of the panel holds: the widget view (unless frozen), `html` (default: the
        panel's own) with its styles as `text/html`, and the text."""
        data: Dict[str, Any] = {}
        if not self.frozen:
            live = super()._repr_mimebundle_()
            data.update(live[0] if isinstance(live, tuple) else (live or {}))
        data["text/html"] = _styled(self.html if html is None else html)
        data["text/plain"] = self.text()
        return data

    def freeze(self, html: Optional[str] = None) -> None:
        """From now on the panel is static: `html` (default: as it is), no widget view in its outputs.
        Only marks the panel; `PanelOutputs.freeze` also writes its outputs."""
        if html is not None:
            self.html = html
        self.frozen = True

    def _repr_mimebundle_(self, **kwargs: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        return self.bundle(), {}

    def _ipython_display_(self) -> None:
        """Displayed with the panel's display id (a cell's result too), so its outputs can follow it."""
        from IPython.display import display

        self.display_id = self.display_id or uuid.uuid4().hex
        display(self.bundle(), raw=True, display_id=self.display_id)
        if self.outputs is not None:
            self.outputs.shown(self)
