"""The MCP server on the official `mcp` SDK (its low-level `Server`: our tools keep their own JSON schemas):
`serve_stdio` for a local client, `serve_http` (streamable HTTP, bearer tokens from a token file) for a
remote one. Each handler hands the call to the `Bridge` on a worker thread (the tools block: a probe's
`wait_events` waits for hits), with the caller's identity as the MCP session reports it.

A client session that ends (stdin closed, HTTP DELETE, idle timeout) gets its live probes removed; every
probe has a TTL as well (at most `ProbeBudget.max_ttl_s`), so a client that vanishes leaves nothing
behind for long.
"""

from __future__ import annotations

import sys
import threading
import uuid
from typing import Any, Optional

import anyio
import mcp_types as types
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from probebook.protocol.tokens import Tokens

from .bridge import Bridge, Caller, tool_specs

__all__ = ["build_server", "serve_stdio", "serve_http", "TokenVerifier"]

_TOOLS = tool_specs()
_STDIO_SESSION = f"stdio-{uuid.uuid4().hex[:8]}"


def _text(text: str, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    params = ctx.session.client_params
    client = f"{params.client_info.name}/{params.client_info.version}" if params is not None else "unknown-client"
    request = ctx.request  # a Starlette request over HTTP, None over stdio
    if request is None:
        return Caller(_STDIO_SESSION, client)
    user = request.scope.get("user")
    token = getattr(getattr(user, "access_token", None), "client_id", "") or ""
    # the SDK ties a handshake-era session id to the token that made it; 2026-07-28 has no sessions and
    # leaves the header unchecked, so there a client is its token and name (`session` opens a new incident)
    header = request.headers.get("mcp-session-id") if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS else None
    return Caller(f"{token}:{header or client}", client, token)


def build_server(bridge: Bridge) -> Server[Any]:
    """The SDK server whose handlers call `bridge`."""

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name=t["name"], description=t["description"],
                                                       input_schema=t["parameters"]) for t in _TOOLS])

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}  # the bridge checks them against the tool's schema (the SDK does not)
        caller = _caller(ctx)
        _watch_session_end(ctx, bridge, caller)
        stop = threading.Event()
        try:
            text, failed = await anyio.to_thread.run_sync(bridge.call, caller, params.name, args, stop,
                                                          abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            stop.set()  # the client gave up: an investigation it started ends and removes its probes
            raise
        return _text(text, failed)

    async def list_resources(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        found = await anyio.to_thread.run_sync(bridge.resources)
        return types.ListResourcesResult(resources=[types.Resource(uri=r["uri"], name=r["name"],
                                                                   description=r["description"],
                                                                   mime_type="application/json") for r in found])

    async def read_resource(ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            text = await anyio.to_thread.run_sync(bridge.read, uri)
        except LookupError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="application/json",
                                                                             text=text)])

    from probebook import __version__

    return Server("probebook", version=__version__, on_list_tools=list_tools, on_call_tool=call_tool,
                  on_list_resources=list_resources, on_read_resource=read_resource)


def _watch_session_end(ctx: ServerRequestContext[Any, Any], bridge: Bridge, caller: Caller) -> None:
    """Remove the session's live probes when its connection ends (handshake-era sessions: stdio EOF, HTTP
    DELETE or idle timeout). The SDK keeps the connection's exit stack private; where it is missing (or
    under 2026-07-28, which has no sessions) the probes' TTL is what removes them."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return
    conn = getattr(ctx.session, "_connection", None)
    state = getattr(conn, "state", None)
    if conn is None or not isinstance(state, dict) or state.get("probebook_watch"):
        return
    state["probebook_watch"] = True

    async def ended() -> None:
        await anyio.to_thread.run_sync(bridge.end_session, caller.session)

    conn.exit_stack.push_async_callback(ended)


class TokenVerifier:
    """The SDK's token verifier over a probebook token file: a presented bearer token is matched in
    constant time against every named secret; its name becomes the caller's identity."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> Optional[AccessToken]:
        name = self.tokens.match(token)
        return AccessToken(token=token, client_id=name, scopes=[]) if name is not None else None


async def serve_stdio(bridge: Bridge) -> None:
    """Serve one client on stdin/stdout until it closes stdin; its probes are removed then."""
    from mcp.server.stdio import stdio_server

    server = build_server(bridge)
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        with anyio.CancelScope(shield=True):  # an interrupt must still remove the client's probes
            await anyio.to_thread.run_sync(bridge.end_session, _STDIO_SESSION)


def serve_http(bridge: Bridge, host: str, port: int, tokens: Tokens, ready: Any = None) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until interrupted; a request without one of `tokens`
    as its bearer token is refused (401). `ready(port)` is called once it listens."""
    import uvicorn

    app = build_server(bridge).streamable_http_app(
        streamable_http_path="/mcp", host=host, token_verifier=TokenVerifier(tokens),
        # required by the SDK to check bearer tokens; no authorization server is involved
        auth=AuthSettings(issuer_url=f"http://{host}:{port}/", resource_server_url=None, required_scopes=[]),
        session_idle_timeout=600)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    if ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            ready(server.servers[0].sockets[0].getsockname()[1] if server.servers else port)

        server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        bridge.close()
    print("probebook mcp: stopped", file=sys.stderr)

