"""Running tools on the server side (spec/tools_protocol.md): an MCP client on
trio (:mod:`.mcp` over :mod:`.stdio` or :mod:`.streamable_http`, speaking
:mod:`.jsonrpc`), written by hand on the project's own HTTP client and SSE
parser — no new runtime dependency."""
