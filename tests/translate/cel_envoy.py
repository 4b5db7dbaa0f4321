"""A real Envoy 1.40 as the oracle for compiled CEL conditions.

One Envoy process serves one listener per case. Each listener's HCM runs the MCP filter, then RBAC with a
single ALLOW policy (`any` permission, `any` principal, `condition` = the compiled Expr), then the router to
a direct_response 200. So a request answered 200 means "the condition held", 403 means it did not.
A case can instead carry its policy per route (`RBACPerRoute`, the shape the control plane uses).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from envoy_data_plane.google.api.expr.v1alpha1 import Expr

from tests.support.envoy import EnvoyProcess
from tests.support.envoy import validate as envoy_validate
from tests.support.processes import wait_for_port

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
MCP = "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


@dataclass(frozen=True)
class Listener:
    name: str
    port: int
    condition: Expr
    per_route: bool = False


def rbac_rules(condition: Expr) -> dict:
    """The RBAC `rules` holding one ALLOW policy gated by `condition` (the shape under test)."""
    return {"action": "ALLOW", "policies": {"cel": {
        "permissions": [{"any": True}],
        "principals": [{"any": True}],
        "condition": condition.to_dict(),
    }}}


def listener_config(spec: Listener) -> dict:
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    rbac = {"@type": RBAC, "rules": rbac_rules(spec.condition)}
    if spec.per_route:
        per_route = {"@type": RBAC_PER_ROUTE, "rbac": {"rules": rbac_rules(spec.condition)}}
        route["typed_per_filter_config"] = {"envoy.filters.http.rbac": per_route}
        rbac = {"@type": RBAC}  # the listener's filter is an empty placeholder: the route carries the policy
    hcm = {
        "@type": HCM,
        "stat_prefix": spec.name,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            {"name": "envoy.filters.http.mcp", "typed_config": {"@type": MCP}},
            {"name": "envoy.filters.http.rbac", "typed_config": rbac},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
        ],
    }
    return {
        "name": spec.name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": spec.port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }


def bootstrap(listeners: list[Listener]) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener_config(spec) for spec in listeners]},
    }


def write_config(path: Path, listeners: list[Listener]) -> Path:
    path.write_text(yaml.safe_dump(bootstrap(listeners), sort_keys=False))
    return path


def validate(config: Path) -> subprocess.CompletedProcess:
    return envoy_validate(config, timeout=60)


@contextlib.contextmanager
def running_envoy(config: Path, ports: list[int]) -> Iterator[EnvoyProcess]:
    """Serve `config` until every listener port accepts connections; stop the process on exit."""
    with EnvoyProcess.start(config, log_path=config.with_suffix(".log"), log_level="warning") as envoy:
        envoy.wait_ready(timeout=20)
        for port in ports:
            wait_for_port(port, what="CEL case listener", proc=envoy.proc, timeout=20)
        yield envoy


def tools_call(port: int, tool: str = "get-sum", path: str = "/mcp",
               protocol_version: str = "2025-11-25") -> tuple[int, str]:
    """POST one JSON-RPC tools/call; return (status, body)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": {}}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": protocol_version}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()
