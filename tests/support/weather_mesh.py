"""The one small mesh the sidecar end-to-end tests serve: an agent, a tool workload and the grant between them."""

from __future__ import annotations


def weather_mesh(*, tool_address: str, service_port: int, app_port: int) -> str:
    """research-agent may call get-sum (and the base protocol) on the weather XBackend, whose one Pod runs as
    ServiceAccount tools/weather-server at `tool_address`, serving `app_port` behind Service port `service_port`."""
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: research-agent, namespace: agents}}
---
apiVersion: v1
kind: Pod
metadata: {{name: weather-0, namespace: tools}}
spec: {{serviceAccountName: weather-server}}
---
apiVersion: v1
kind: Service
metadata: {{name: weather, namespace: tools}}
spec:
  ports: [{{name: http, port: {service_port}, targetPort: {app_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: weather-0
  namespace: tools
  labels: {{kubernetes.io/service-name: weather}}
addressType: IPv4
endpoints:
  - addresses: ["{tool_address}"]
    conditions: {{ready: true}}
    targetRef: {{kind: Pod, name: weather-0, namespace: tools}}
ports: [{{name: http, port: {app_port}}}]
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {{name: weather-mcp, namespace: tools}}
spec:
  mcp: {{serviceName: weather, port: {service_port}, path: /mcp}}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: weather-grants, namespace: tools}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: weather-mcp}}]
  action: Allow
  rules:
    - name: research
      source:
        type: ServiceAccount
        serviceAccount: {{name: research-agent, namespace: agents}}
      authorization:
        type: Inline
        mcp:
          mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
          methods: [{{name: tools/call, params: [get-sum]}}]
"""
