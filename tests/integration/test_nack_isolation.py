"""One policy that Envoy refuses must not hold back the others: it is withheld, the rest lands.

The control plane here admits regexes up to an RE2 program size of 1,000 while Envoy keeps its
default limit of 100 (an operator who raised one and not the other), so a policy with a long regex
passes admission and Envoy refuses (NACKs) the RouteConfiguration holding it. Without isolation every
later route update carries the bad regex too and is refused with it: a revocation in another policy
would never be enforced.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.mesh import LocalMesh

pytestmark = pytest.mark.slow

LONG_REGEX = "[a-z]{200}"  # RE2 program size 204: over Envoy's 100, under the control plane's 1,000 here
BAD_POLICY = f"""
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: header-gated, namespace: quickstart}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}}]
  action: Allow
  rules:
    - name: gated
      source: {{type: ServiceAccount, serviceAccount: {{name: research-agent}}}}
      authorization:
        type: Inline
        headers: [{{name: x-team, type: RegularExpression, value: "{LONG_REGEX}"}}]
"""
SUM = {"a": 2, "b": 3}


async def eventually(check, *, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_a_refused_policy_is_withheld_and_a_revocation_elsewhere_still_lands(tmp_path):
    with LocalMesh(tmp_path, serve_args=("--max-regex-program-size", "1000")) as mesh:
        async with mesh.client("math-agent") as math:
            await math.initialize()
            assert (await math.call_tool("get-sum", SUM)).error is None

            (mesh.config / "40-bad-regex.yaml").write_text(BAD_POLICY)

            async def withheld() -> bool:
                return "withholding XAccessPolicy quickstart/header-gated" in mesh.log()
            await eventually(withheld, what="the refused policy was never withheld")
            assert "RE2 program size of 204" in mesh.log()  # Envoy's own reason, carried into the log

            mesh.edit("30-policies.yaml", 'params: ["get-sum"]', 'params: ["echo"]')  # revoke get-sum

            async def revoked() -> bool:
                return (await math.call_tool("get-sum", SUM)).error is not None
            await eventually(revoked, what="the revocation never reached Envoy")
            assert (await math.call_tool("echo", {"message": "hi"})).error is None

        async with mesh.client("research-agent") as research:  # still allowed by the other gateway policy
            await research.initialize()
            assert (await research.call_tool("echo", {"message": "hi"})).error is None

        def synced() -> bool:
            types = [t for p in mesh.admin_json("/debug/syncz")["proxies"] for t in p["types"]]
            return bool(types) and all(t["status"] == "SYNCED" for t in types)
        deadline = time.monotonic() + 10
        while not synced():
            assert time.monotonic() < deadline, mesh.admin_json("/debug/syncz")
            await asyncio.sleep(0.1)
