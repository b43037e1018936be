"""The one widget class every panel is: HTML rendered in Python, shown by a few lines of JavaScript.

The front end only draws `html`, counts TTLs down between updates (`data-ttl` seconds), sends
button clicks back (`data-action`) and copies JSON to the clipboard (`data-copy`). The same HTML
is the static fallback (`text/html`), so a notebook opened without a kernel, nbconvert and GitHub
show the panel as it last was.
"""

from __future__ import annotations

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
  const timer = setInterval(tick, 1000);
  return () => { clearInterval(timer); model.off("change:html", draw); };
}
export default { render };
"""

Action = Callable[[str, str], Optional[str]]


class HtmlPanel(anywidget.AnyWidget):
    """A panel showing `html`; `copy_json` holds what the copy buttons put on the clipboard."""

    _esm = _ESM
    _css = CSS
    html = traitlets.Unicode("").tag(sync=True)
    copy_json = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._actions: Dict[str, Action] = {}
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
        return f"<style>{CSS}</style>{self.html}"

    def _repr_mimebundle_(self, **kwargs: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        data = dict(data)
        data["text/html"] = self._repr_html_()
        data["text/plain"] = self.text()
        return data, dict(meta)
