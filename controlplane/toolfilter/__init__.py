"""`tools/list` filtered per caller: an agent sees only the tools it may call through this hop.

Envoy's ext_proc filter (translate/features/tools_list.py) asks the control plane, over the xDS
connection it already holds, about each MCP response. `service.py` answers: for a `tools/list`
response it asks for the body and returns it filtered (`body.py`, pure) by what the authorization
graph says this caller may call there (`decide.py`). The list is a courtesy, never a control:
`tools/call` stays enforced by RBAC whatever the list says.
"""
