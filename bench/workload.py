"""The bench's mesh, as a directory of manifests: what `make bench` measures is what `serve --config` reads.

One Gateway (one HTTPS listener), `rules` rules: `rules // 3` XAccessPolicies of 3 rules each (one per
agent), spread over `rules // 10` XBackends (each behind its own HTTPRoute), so a backend holds about
3 policies, under the admission limit of 5 per target. Each rule grants one agent a few tools.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.api.base import ResourceKey

TOOLS_PER_RULE = 3
GATEWAY = ResourceKey("Gateway", "bench", "gw")
CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "bench"},
         "spec": {"controllerName": "sigs.k8s.io/kube-agentic-networking-controller"}}
GATEWAY_DOC = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "bench"},
               "spec": {"gatewayClassName": "bench",
                        "listeners": [{"name": "mcp", "protocol": "HTTPS", "port": 10443}]}}


def counts(rules: int) -> tuple[int, int]:
    """(policies, backends) for a mesh of `rules` rules."""
    return max(1, rules // 3), max(1, rules // 10)


def backend_docs(index: int) -> list[dict]:
    return [{"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend",
             "metadata": {"name": f"be{index}", "namespace": "bench"},
             "spec": {"mcp": {"serviceName": f"svc{index}", "port": 3001}}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": f"r{index}", "namespace": "bench"},
             "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
                 "matches": [{"path": {"type": "PathPrefix", "value": f"/mcp/{index}"}}],
                 "backendRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                  "name": f"be{index}"}]}]}}]


def policy_doc(index: int, backends: int, *, revision: int = 0) -> dict:
    """Policy `index`: 3 agents, each granted TOOLS_PER_RULE tools; `revision` changes one tool name."""
    rules = [{"name": f"agent{agent}",
              "source": {"type": "ServiceAccount", "serviceAccount": {"name": f"agent{(index + agent) % 50}"}},
              "authorization": {"type": "Inline", "mcp": {
                  "mcpBaseProtocolMethodsOption": "MATCH_BASE_PROTOCOL_METHODS",
                  "methods": [{"name": "tools/call", "params": [
                      f"tool{(index * 7 + agent * 3 + t) % 200}" + (f"-r{revision}" if t == 0 and agent == 0
                                                                     and revision else "")
                      for t in range(TOOLS_PER_RULE)]}]}}}
             for agent in range(3)]
    return {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
            "metadata": {"name": f"p{index}", "namespace": "bench"},
            "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                     "name": f"be{index % backends}"}],
                     "action": "Allow", "rules": rules}}


def write_mesh(root: Path, rules: int) -> list[Path]:
    """Write the mesh under `root`: one file per backend (XBackend + HTTPRoute), one per policy."""
    policies, backends = counts(rules)
    root.mkdir(parents=True, exist_ok=True)
    _dump(root / "gateway.yaml", [CLASS, GATEWAY_DOC])
    for index in range(backends):
        _dump(root / f"backend-{index}.yaml", backend_docs(index))
    return [write_policy(root, index, backends) for index in range(policies)]


def write_policy(root: Path, index: int, backends: int, *, revision: int = 0) -> Path:
    path = root / f"policy-{index}.yaml"
    _dump(path, [policy_doc(index, backends, revision=revision)])
    return path


def _dump(path: Path, docs: list[dict]) -> None:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
