"""The reference guardrail service: Envoy's ext_proc protocol, judging MCP tool arguments and results.

`agentic-cp guardrail serve` runs it. A GuardrailPolicy (features/guardrail.py) sends it each guarded
request's headers and whole body, and the response's when responses are judged; it answers CONTINUE,
or an ImmediateResponse carrying a JSON-RPC error that says which detector matched (never the secret).
detectors.py finds secrets in text, messages.py reads hostile bodies, judge.py decides, server.py speaks
gRPC. Nothing here imports translation or the graph: it is a separate program the proxy calls.
"""
