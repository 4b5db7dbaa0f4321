"""Translation: a proxy's typed view (graph/view.py) -> its Envoy resources (proto3 JSON).

Rooms: `roles/` (one module per kind of proxy: `roles/gateway.py`), `features/` (one module per Envoy
feature, and the ordered FEATURES list), the skeleton builders without feature knowledge
(`listener.py`, `route_config.py`, `clusters.py`, `context.py`), the CEL-to-Envoy compiler (`cel.py`)
and bootstrap generation (`bootstrap.py`). From the graph, translation imports only graph.view.
"""
