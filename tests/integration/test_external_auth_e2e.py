"""ExternalAuth end to end: upstream's TestExternalAuthE2E and XAccessPolicyEvaluationLogic through real Envoy.

The control plane, a real Envoy gateway and the MCP server run as in production (LocalMesh); the
external authorizer is `tests.support.ext_authz`, a real gRPC ext_authz server with the
allow-list of upstream's AuthConfig (method `initialize`, `tools/call` of get-sum or get-env), reached
through a Service and EndpointSlice like any in-cluster authorizer. Upstream's policy manifests are
applied as they are, with upstream's names mapped onto the quickstart (namespace, Gateway, XBackend),
by writing them into the folder the control plane watches while sessions stay open.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import upstream_dir
from tests.support.ext_authz import serve_ext_authz
from tests.support.mesh import QUICKSTART, LocalMesh

pytestmark = pytest.mark.slow

NS = "quickstart"
RENAMES = {"e2e-test-ns": NS, "agentic-conformance-infra": NS, "e2e-mcp-backend": "everything-mcp",
           "e2e-gateway": "agent-gateway", "conformance-primary": "agent-gateway"}
TESTER_1, TESTER_2, CONFORMANCE_TESTER = "e2e-tester-sa", "e2e-tester-2-sa", "conformance-tester-sa"
DENIED = {"code": 403, "message": "Access to this tool is forbidden."}
CASE_FILE = "50-case.yaml"

AUTHORIZER = """\
apiVersion: v1
kind: ServiceAccount
metadata: {{name: e2e-tester-sa, namespace: quickstart}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: e2e-tester-2-sa, namespace: quickstart}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: conformance-tester-sa, namespace: quickstart}}
---
# The authorizer, as upstream deploys Authorino: a Service with a gRPC port 50051.
apiVersion: v1
kind: Service
metadata: {{name: authorino, namespace: quickstart}}
spec:
  ports: [{{name: grpc, port: 50051}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: authorino-local, namespace: quickstart, labels: {{kubernetes.io/service-name: authorino}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
ports: [{{name: grpc, port: {port}}}]
"""

MISSING_AUTHORIZER_ON_BACKEND = """\
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: backend-extauth-missing-service, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  action: ExternalAuth
  externalAuth:
    protocol: GRPC
    grpc: {}
    backendRef: {name: ext-auth-svc, port: 50051}
"""


def upstream_policies(rel: str) -> str:
    """The XAccessPolicies of an upstream manifest, renamed onto the quickstart (Authorino's own
    Deployment, RBAC and AuthConfig are replaced by the test authorizer)."""
    text = (upstream_dir() / rel).read_text()
    for old, new in RENAMES.items():
        text = text.replace(old, new)
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "XAccessPolicy"]
    return yaml.safe_dump_all(docs, sort_keys=False)


def write_case(mesh: LocalMesh, text: str) -> None:
    """Replace the case file atomically, so the control plane sees deletions and additions at once."""
    tmp = mesh.config / (CASE_FILE + ".tmp~")
    tmp.write_text(text)
    tmp.replace(mesh.config / CASE_FILE)


def stat(mesh: LocalMesh, name: str) -> int:
    return mesh.envoy.stats(name).get(name, 0)


def spiffe(agent: str) -> str:
    return f"spiffe://cluster.local/ns/{NS}/sa/{agent}"


@asynccontextmanager
async def authorized_mesh(tmp_path: Path):
    """The test authorizer on this loop, then a mesh whose config names it; every push ACKed at the end."""
    async with serve_ext_authz(allowed_tools={"get-sum", "get-env"}, port=0) as authz:
        source = tmp_path / "source"
        shutil.copytree(QUICKSTART, source)
        (source / "30-policies.yaml").unlink()  # upstream's suites start with no policy
        (source / "40-authorizer.yaml").write_text(AUTHORIZER.format(port=authz.port))
        mesh = LocalMesh(tmp_path / "mesh", config=source)
        try:
            await asyncio.to_thread(mesh.start)  # blocking; the authorizer keeps serving on this loop
            yield mesh, authz
            for proxy in mesh.admin_json("/debug/syncz")["proxies"]:
                for state in proxy["types"]:
                    assert state["last_nack_error"] is None and state["status"] == "SYNCED", state
        finally:
            await asyncio.to_thread(mesh.stop)


async def until(client, tool: str, args: dict, *, denied: bool, timeout: float = 10) -> None:
    """Wait for a pushed policy to take effect (upstream retries each call 10 x 2 s)."""
    deadline = time.monotonic() + timeout
    while ((await client.call_tool(tool, args)).error == DENIED) != denied:
        assert time.monotonic() < deadline, f"{tool} never became {'denied' if denied else 'allowed'}"
        await asyncio.sleep(0.1)


async def allowed(client, tool: str, args: dict, text: str | None = None) -> None:
    answer = await client.call_tool(tool, args)
    assert answer.http_status == 200 and answer.error is None, (tool, answer.raw)
    assert answer.result["isError"] is False
    if text is not None:
        assert answer.text == text


async def denied(client, tool: str, args: dict) -> None:
    """Upstream's deny_response: HTTP 200 with the JSON-RPC error carrying the request's own id."""
    answer = await client.call_tool(tool, args)
    assert answer.http_status == 200 and answer.error == DENIED, (tool, answer.raw)
    assert answer.body["id"] == answer.request_id and answer.body["jsonrpc"] == "2.0"


def seen(authz) -> list[tuple[str, str | None, str | None, bool]]:
    return [(c.principal, c.method, c.tool, c.allowed) for c in authz.checks]


async def test_upstream_external_auth_e2e(tmp_path):
    async with authorized_mesh(tmp_path) as (mesh, authz):
        async with mesh.client(TESTER_1) as t1, mesh.client(TESTER_2) as t2:
            assert (await t1.initialize()).result is not None  # before any policy exists, as upstream
            assert (await t2.initialize()).result is not None
            listeners_before = stat(mesh, "listener_manager.listener_modified")

            # Case 1: XBackend-level Inline Allow for both testers + ExternalAuth for tester-2 only.
            write_case(mesh, upstream_policies("e2e-testdata/backend-policy-extauth.yaml"))
            await until(t1, "get-env", {}, denied=True)
            await until(t2, "echo", {"message": "world"}, denied=True)
            authz.checks.clear()
            await allowed(t1, "echo", {"message": "hello"}, "Echo: hello")
            await allowed(t1, "get-sum", {"a": 2, "b": 3}, "The sum of 2 and 3 is 5.")
            await denied(t1, "get-env", {})
            await allowed(t2, "get-sum", {"a": 5, "b": 7}, "The sum of 5 and 7 is 12.")
            await allowed(t2, "get-env", {})
            await denied(t2, "echo", {"message": "world"})  # the Inline rule allows it; the authorizer does not
            # Only tester-2's requests were delegated, with the MCP method and tool in the metadata context.
            assert seen(authz) == [(spiffe(TESTER_2), "tools/call", "get-sum", True),
                                   (spiffe(TESTER_2), "tools/call", "get-env", True),
                                   (spiffe(TESTER_2), "tools/call", "echo", False)]
            assert authz.checks[-1].mcp["params"] == {"name": "echo"} and authz.checks[-1].http_method == "POST"

            # Case 2: the backend policies go, a Gateway-level ExternalAuth for both testers comes.
            write_case(mesh, upstream_policies("e2e-testdata/gateway-policy-extauth.yaml"))
            await until(t1, "echo", {"message": "test"}, denied=True)
            await until(t1, "get-env", {}, denied=False)
            authz.checks.clear()
            await allowed(t1, "get-sum", {"a": 10, "b": 20}, "The sum of 10 and 20 is 30.")
            await allowed(t1, "get-env", {})
            await denied(t1, "echo", {"message": "test"})
            await allowed(t2, "get-sum", {"a": 3, "b": 4}, "The sum of 3 and 4 is 7.")
            await denied(t2, "echo", {"message": "gateway"})
            assert seen(authz) == [(spiffe(TESTER_1), "tools/call", "get-sum", True),
                                   (spiffe(TESTER_1), "tools/call", "get-env", True),
                                   (spiffe(TESTER_1), "tools/call", "echo", False),
                                   (spiffe(TESTER_2), "tools/call", "get-sum", True),
                                   (spiffe(TESTER_2), "tools/call", "echo", False)]

        # Switching ExternalAuth on (at both levels) and off again never modified the Listener.
        assert stat(mesh, "listener_manager.listener_modified") == listeners_before
        stats = mesh.envoy.stats("ext_authz")
        assert any(k.endswith("ext_authz.backend.denied") and v > 0 for k, v in stats.items()), stats
        assert any(k.endswith("ext_authz.gateway.denied") and v > 0 for k, v in stats.items()), stats


async def test_upstream_conformance_evaluation_logic_and_a_missing_authorizer_fails_closed(tmp_path):
    async with authorized_mesh(tmp_path) as (mesh, authz):
        write_case(mesh, upstream_policies("conformance-testdata/xaccesspolicy-evaluation-logic.yaml"))
        async with mesh.client(CONFORMANCE_TESTER) as probe:
            await until(probe, "get-env", {}, denied=True)  # the Allow policy is in effect
        authz.checks.clear()
        async with mesh.client(CONFORMANCE_TESTER) as tester:
            opened = await tester.initialize()
            assert opened.http_status == 200 and opened.result is not None and tester.session_id
            await allowed(tester, "get-sum", {"a": 2, "b": 3}, "The sum of 2 and 3 is 5.")
            await denied(tester, "get-env", {})  # the authorizer allows it, the Allow policy does not
            await denied(tester, "echo", {"message": "hello"})  # both deny; the authorizer is asked first
            me = spiffe(CONFORMANCE_TESTER)
            assert [c for c in seen(authz) if c[1] != "notifications/initialized"] == [
                (me, "initialize", None, True), (me, "tools/call", "get-sum", True),
                (me, "tools/call", "get-env", True), (me, "tools/call", "echo", False)]

            # XAccessPolicyExtAuthAccepted's Service does not exist: accepted, and what it would
            # decide is denied (fail closed), here on the XBackend, beside the Gateway's policies.
            write_case(mesh, upstream_policies("conformance-testdata/xaccesspolicy-evaluation-logic.yaml")
                       + "---\n" + MISSING_AUTHORIZER_ON_BACKEND)
            await until(tester, "get-sum", {"a": 2, "b": 3}, denied=True)
            await denied(tester, "get-sum", {"a": 2, "b": 3})
