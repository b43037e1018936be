"""probebook for MCP clients: the assistant's tools, resources and proof gate over the Model Context
Protocol (`probebook mcp`, docs/mcp.md). `Bridge` is the protocol-free core; `server` wires it to the
official `mcp` SDK (the notebook side's dependency, `probebook[lab]`)."""

from .bridge import Bridge, Caller, tool_specs
from .server import build_server, serve_http, serve_stdio

__all__ = ["Bridge", "Caller", "tool_specs", "build_server", "serve_http", "serve_stdio"]
