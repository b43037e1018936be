"""A local server that speaks the OpenAI Chat Completions protocol (POST /v1/chat/completions) and
plays a script, for the real `openai` client to talk to over HTTP. A hosted model cannot run here;
this fake is at the protocol level, the client and everything of ours is real.

Each script step is a message dict (see `call` and `say`) or a function of the request body that
returns one, so a step can read what the previous tool answered (a probe's alias, evidence ids).
Every request body is recorded in `requests`. When the script runs out the model says "done"
without tools.

    with FakeOpenAI([call("services"), say("no idea")]) as server:
        LlmConfig(base_url=server.base_url, model="fake")
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Union

Step = Union[Dict[str, Any], Callable[[Dict[str, Any]], Dict[str, Any]]]
_ids = itertools.count(1)


def call(name: str, _raw: Optional[str] = None, **args: Any) -> Dict[str, Any]:
    """An assistant message that calls one tool (`_raw`: the arguments text as sent, even if not JSON)."""
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{next(_ids)}", "type": "function",
         "function": {"name": name, "arguments": json.dumps(args) if _raw is None else _raw}}]}


def say(text: str) -> Dict[str, Any]:
    """An assistant message without tools."""
    return {"role": "assistant", "content": text}


def tool_answer(request: Dict[str, Any], back: int = 1) -> Dict[str, Any]:
    """The JSON of the `back`-th last tool message the client sent."""
    tools = [m for m in request["messages"] if m.get("role") == "tool"]
    return json.loads(tools[-back]["content"])


class FakeOpenAI:
    """Serves the script on 127.0.0.1 at a free port; `base_url` ends in /v1. `usage`: the
    total_tokens each answer reports (None: none reported)."""

    def __init__(self, script: List[Step], usage: Optional[int] = 50, api_key: str = "") -> None:
        self.script = list(script)
        self.usage = usage
        self.api_key = api_key
        self.requests: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def sent(self) -> str:
        """Everything the client sent, as one text (to look for what must never reach a model)."""
        return "\n".join(json.dumps(r) for r in self.requests)

    def _answer(self, body: Dict[str, Any]) -> Dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            step = self.script.pop(0) if self.script else say("done")
        message = step(body) if callable(step) else step
        out: Dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}]}
        if self.usage is not None:
            out["usage"] = {"prompt_tokens": self.usage - 10, "completion_tokens": 10, "total_tokens": self.usage}
        return out

    def _handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _send(self, status: int, body: Dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._send(401, {"error": {"message": "bad api key", "type": "invalid_request_error"}})
                try:
                    self._send(200, fake._answer(json.loads(raw)))
                except Exception as exc:  # a broken script step: the test reads `errors`
                    fake.errors.append(f"{type(exc).__name__}: {exc}")
                    self._send(500, {"error": {"message": str(exc), "type": "server_error"}})

        return Handler
