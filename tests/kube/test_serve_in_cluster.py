"""`agentic-cp serve --kubeconfig` end to end against a server speaking the Kubernetes API: the quickstart's
objects in the cluster become a published xDS config, and the elected replica writes upstream's statuses."""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from pathlib import Path

import yaml

from controlplane.cli import _in_kubernetes, _parser
from controlplane.controller import Settings
from controlplane.identity.xds_auth import node_id_for_gateway
from controlplane.kube.kinds import GATEWAY, GUARDRAILPOLICY, HTTPROUTE, XACCESSPOLICY
from controlplane.sources.kubernetes import KubernetesSource
from controlplane.xds.resources import CLUSTER
from tests.kube.fakeapi import FakeApiServer, flag

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
NODE = node_id_for_gateway("quickstart", "agent-gateway")


def quickstart_objects() -> list[dict]:
    return [doc for path in sorted(QUICKSTART.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


async def wait_for(check, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
    return result


def condition(status: dict | None, type_: str) -> dict | None:
    return next((c for c in (status or {}).get("conditions", []) if c["type"] == type_), None)


async def test_serve_from_a_cluster_publishes_config_and_writes_statuses(tmp_path):
    api = FakeApiServer()
    await api.start()
    for obj in quickstart_objects():
        api.create(obj)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    args = _parser().parse_args(["serve", "--kubeconfig", str(kubeconfig), "--state-dir", str(tmp_path / "state"),
                                 "--namespace", "agentic-system", "--xds-address", "127.0.0.1:0",
                                 "--admin-address", "127.0.0.1:0"])
    control_plane = _in_kubernetes(args, Settings(state_dir=tmp_path / "state", trust_domain="cluster.local",
                                                  xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))
    task = asyncio.create_task(control_plane.run())
    try:
        await wait_for(lambda: control_plane.cache.get(NODE) is not None)
        policy = await wait_for(lambda: (api.get(XACCESSPOLICY, "quickstart", "everything-tool-grants") or {})
                                .get("status"))
        ancestor = policy["ancestors"][0]
        assert ancestor["ancestorRef"]["kind"] == "XBackend"
        assert ancestor["controllerName"] == "sigs.k8s.io/kube-agentic-networking-controller"
        assert condition(ancestor, "Accepted")["status"] == "True"
        gateway = await wait_for(lambda: (api.get(GATEWAY, "quickstart", "agent-gateway") or {}).get("status"))
        assert condition(gateway, "Accepted")["status"] == "True"
        await wait_for(lambda: condition(api.get(GATEWAY, "quickstart", "agent-gateway")["status"],
                                         "Programmed")["status"] == "True")
        assert gateway["listeners"][0]["attachedRoutes"] == 1
        route = await wait_for(lambda: (api.get(HTTPROUTE, "quickstart", "everything-route") or {}).get("status"))
        assert condition(route["parents"][0], "ResolvedRefs")["status"] == "True"

        # A sixth Allow policy on the same XBackend is refused, and says so in its status.
        base = api.get(XACCESSPOLICY, "quickstart", "everything-tool-grants")
        for i in range(5):
            extra = copy.deepcopy({k: base[k] for k in ("apiVersion", "kind", "spec")})
            extra["metadata"] = {"name": f"extra-{i}", "namespace": "quickstart"}
            api.create(extra)
        refused = await wait_for(lambda: (api.get(XACCESSPOLICY, "quickstart", "extra-4") or {}).get("status"))
        assert condition(refused["ancestors"][0], "Accepted")["reason"] == "LimitPerTargetExceeded"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.stop()


GUARDRAIL = {
    "apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "GuardrailPolicy",
    "metadata": {"name": "secrets", "namespace": "quickstart"},
    "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "everything-mcp"}],
             "service": {"address": "127.0.0.1:9002"}},
}


def serve_control_plane(tmp_path, kubeconfig):
    args = _parser().parse_args(["serve", "--kubeconfig", str(kubeconfig), "--state-dir", str(tmp_path / "state"),
                                 "--namespace", "agentic-system", "--xds-address", "127.0.0.1:0",
                                 "--admin-address", "127.0.0.1:0"])
    return _in_kubernetes(args, Settings(state_dir=tmp_path / "state", trust_domain="cluster.local",
                                         xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))


def guardrail_clusters(control_plane) -> list[str]:
    snapshot = control_plane.cache.get(NODE)
    return [] if snapshot is None else sorted(n for n in snapshot.resources(CLUSTER) if n.startswith("guardrail/"))


async def test_a_guardrail_policy_in_the_cluster_is_programmed_and_gets_its_status(tmp_path):
    api = FakeApiServer()
    await api.start()
    for obj in quickstart_objects():
        api.create(obj)
    api.create(copy.deepcopy(GUARDRAIL))
    control_plane = serve_control_plane(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"))
    task = asyncio.create_task(control_plane.run())
    try:
        assert await wait_for(lambda: guardrail_clusters(control_plane)) == ["guardrail/address/127.0.0.1/9002"]
        status = await wait_for(lambda: (api.get(GUARDRAILPOLICY, "quickstart", "secrets") or {}).get("status"))
        [ancestor] = status["ancestors"]
        assert ancestor["ancestorRef"]["kind"] == "XBackend" and ancestor["ancestorRef"]["name"] == "everything-mcp"
        assert condition(ancestor, "Accepted")["status"] == "True"
        # A second guardrail on the same XBackend loses to the older one, and says so.
        later = copy.deepcopy(GUARDRAIL)
        later["metadata"]["name"] = "later"
        api.create(later)
        refused = await wait_for(lambda: (api.get(GUARDRAILPOLICY, "quickstart", "later") or {}).get("status"))
        assert condition(refused["ancestors"][0], "Accepted")["reason"] == "Conflicted"
        # Deleted: the guardrail leaves the proxy's config.
        api.delete(GUARDRAILPOLICY, "quickstart", "secrets")
        api.delete(GUARDRAILPOLICY, "quickstart", "later")
        await wait_for(lambda: guardrail_clusters(control_plane) == [])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.stop()


def list_requests(api, plural):
    return [r for r in api.requests if r.method == "GET" and r.path.endswith("/" + plural) and not flag(r.query, "watch")]


async def test_a_cluster_without_our_crds_serves_the_rest_and_reads_them_once_installed(tmp_path, caplog,
                                                                                      monkeypatch):
    """RateLimitPolicy's and GuardrailPolicy's CRDs are not installed: their group answers 404. The
    rest is served, each missing kind is logged once (however often it is retried), and the kinds are
    read when the CRDs appear, without a restart: the official client's CustomObjectsApi asks for the
    path itself at every list, with no discovery cache to refresh."""
    monkeypatch.setattr("controlplane.kube.serve.KubernetesSource",
                        functools.partial(KubernetesSource, failure_retry=0.1))  # instead of 30s
    caplog.set_level(logging.INFO, logger="controlplane.controller")
    api = FakeApiServer()
    await api.start()
    for plural in ("ratelimitpolicies", "guardrailpolicies"):
        api.uninstall(plural)
    for obj in quickstart_objects():
        api.create(obj)
    api.create(copy.deepcopy(GUARDRAIL))
    control_plane = serve_control_plane(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"))
    task = asyncio.create_task(control_plane.run())
    try:
        await wait_for(lambda: control_plane.cache.get(NODE) is not None)  # the rest is served
        await wait_for(lambda: len(list_requests(api, "guardrailpolicies")) >= 4)  # retried, still alive
        assert not task.done()
        assert api.watch_requests("guardrailpolicies") == [] and api.watch_requests("ratelimitpolicies") == []
        assert guardrail_clusters(control_plane) == []
        missing = [r.getMessage() for r in caplog.records if "cannot read a kind" in r.getMessage()]
        print("\n".join(missing))
        assert len(missing) == 2  # one line per missing kind, not one per retry
        for resource in ("ratelimitpolicies.governance.agentic-cp.dev", "guardrailpolicies.governance.agentic-cp.dev"):
            [line] = [m for m in missing if resource in m]
            assert "CRD is not installed" in line and "helm upgrade" in line
        assert (api.get(GUARDRAILPOLICY, "quickstart", "secrets") or {}).get("status") is None

        for plural in ("ratelimitpolicies", "guardrailpolicies"):
            api.install(plural)
        assert await wait_for(lambda: guardrail_clusters(control_plane)) == ["guardrail/address/127.0.0.1/9002"]
        status = await wait_for(lambda: (api.get(GUARDRAILPOLICY, "quickstart", "secrets") or {}).get("status"))
        assert condition(status["ancestors"][0], "Accepted")["status"] == "True"
        cleared = [r.getMessage() for r in caplog.records if r.getMessage().startswith("problem cleared")]
        assert sum("guardrailpolicies" in m for m in cleared) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.stop()


def test_serve_provisions_by_default_with_the_image_the_chart_pins(tmp_path):
    from controlplane.cli import PINNED_PROXY_IMAGE, _cluster_options

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "helm/agentic-cp/values.yaml").read_text())
    assert PINNED_PROXY_IMAGE == f"{values['proxy']['image']['repository']}:{values['proxy']['image']['tag']}"
    base = ["serve", "--kubeconfig", "k", "--state-dir", str(tmp_path)]
    assert _cluster_options(_parser().parse_args(base)).proxy_image == PINNED_PROXY_IMAGE
    assert _cluster_options(_parser().parse_args([*base, "--proxy-image", "mirror/envoy:x"])).proxy_image == \
        "mirror/envoy:x"
    assert _cluster_options(_parser().parse_args([*base, "--no-provision"])).proxy_image is None
