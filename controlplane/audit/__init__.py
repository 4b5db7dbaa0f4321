"""The audit trail: one record per request at every enforcing proxy, from Envoy's access log streams.

`record.py` is the one schema (shared with the stdout access log, features/access_log.py), `service.py`
Envoy's gRPC access log service, `sink.py` the JSON-lines file and the Prometheus counters, `query.py`
what `agentic-cp audit` reads back.
"""
