"""The dependency index never misses: an incremental publish, which builds only the views the index
returns, leaves every proxy with the snapshot a from-scratch publish of the same objects gives.

A seeded generator edits the quickstart, tests/manifests/valid and the sidecar weather mesh (add, delete,
retarget a parentRef/targetRef/backendRef, rename, move a Pod to another ServiceAccount); after each step
the two publishers are compared proxy by proxy. Targeted cases name the brief's list one by one."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.controller import Publisher, _workload_keys
from controlplane.graph.model import AuthorizationGraph, build
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.xds.cache import SnapshotCache
from tests.support.weather_mesh import weather_mesh

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "examples" / "quickstart", REPO / "tests" / "manifests" / "valid"]


def _documents() -> list[dict]:
    docs = [d for source in SOURCES for f in sorted(source.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
    docs += [d for d in yaml.safe_load_all(weather_mesh(tool_address="10.0.0.7", service_port=80, app_port=8080))
             if isinstance(d, dict)]
    return docs


def _parse(doc: dict):
    try:
        return parse_object(doc)
    except (ValidationError, ValueError):
        return None


@pytest.fixture(scope="module")
def certificates():
    return CertificateManager(CertificateAuthority.create(trust_domain="cluster.local"))


class Mesh:
    """One incrementally published mesh, checked against a full publish of the same objects."""

    def __init__(self, docs: list[dict], certificates: CertificateManager):
        self.certificates = certificates
        self.objects = {}
        for doc in docs:
            obj = _parse(doc)
            if obj is not None:
                self.objects[obj.key] = obj
        graph = AuthorizationGraph()
        graph.apply(ChangeSet(upserts=list(self.objects.values()), synced=True))
        self.publisher = Publisher(graph=graph, cache=SnapshotCache(version_prefix="v"), certificates=certificates)
        self.publisher.publish()

    def change(self, upserts=(), deletes=()) -> None:
        change = ChangeSet(upserts=list(upserts), deletes=list(deletes))
        for obj in change.upserts:
            self.objects[obj.key] = obj
        for key in change.deletes:
            self.objects.pop(key, None)
        self.publisher.publish(self.publisher.graph.apply(change) | _workload_keys(change))

    def assert_same_as_full(self) -> None:
        full = Publisher(graph=build(self.objects.values()), cache=SnapshotCache(version_prefix="v"), certificates=self.certificates)
        full.publish()
        mine, theirs = self.publisher.cache, full.cache
        assert sorted(mine.node_keys()) == sorted(theirs.node_keys())
        for node in theirs.node_keys():
            assert mine.get(node) == theirs.get(node), f"{node} differs from a full publish"


# --- the property: random edit sequences ----------------------------------------------------------------

RETARGETS = {"parentRefs", "targetRefs", "backendRefs"}


def _refs(value, found):
    """Every parentRef/targetRef/backendRef dict in a document, to retarget one."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in RETARGETS and isinstance(v, list):
                found += [ref for ref in v if isinstance(ref, dict) and "name" in ref]
            _refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _refs(v, found)
    return found


def _edit(rng: random.Random, mesh: Mesh, pool: list[dict]):
    """One random edit: (upserts, deletes), or None when the drawn edit does not apply."""
    present = sorted(mesh.objects)
    names = sorted({d["metadata"]["name"] for d in pool} | {"nowhere"})
    action = rng.choice(["add", "delete", "retarget", "retarget", "rename", "pod"])
    if action == "add":
        obj = _parse(rng.choice(pool))
        return ([obj], []) if obj is not None else None
    if not present:
        return None
    key = rng.choice(present)
    if action == "delete":
        return [], [key]
    doc = mesh.objects[key].model_dump(by_alias=True, exclude_none=True, mode="json")
    if action == "retarget":
        refs = _refs(doc, [])
        if not refs:
            return None
        rng.choice(refs)["name"] = rng.choice(names)
    elif action == "rename":
        doc["metadata"]["name"] = rng.choice(names)
        obj = _parse(doc)
        return ([obj], [key]) if obj is not None and obj.key != key else None
    else:
        pods = [k for k in present if k.kind == "Pod"]
        if not pods:
            return None
        key = rng.choice(pods)
        doc = mesh.objects[key].model_dump(by_alias=True, exclude_none=True, mode="json")
        doc["spec"]["serviceAccountName"] = rng.choice(["weather-server", "research-agent", "math-agent", "new-sa"])
    obj = _parse(doc)
    return ([obj], []) if obj is not None else None


@pytest.mark.parametrize("seed", [0, 1] + [pytest.param(s, marks=pytest.mark.slow) for s in range(2, 10)])
def test_random_edits_publish_what_a_full_publish_would(seed, certificates):
    pool = _documents()
    rng = random.Random(seed)
    mesh = Mesh(pool, certificates)
    built, proxies, steps = 0, 0, 0
    while steps < 30:
        edit = _edit(rng, mesh, pool)
        if edit is None:
            continue
        steps += 1
        mesh.change(*edit)
        mesh.assert_same_as_full()
        built += mesh.publisher.views_built
        proxies += len(mesh.publisher.published)
    assert built < proxies  # the index left some proxies alone: the comparison tested skipping, not rebuilding


# --- targeted cases -------------------------------------------------------------------------------------

GW = ResourceKey("Gateway", "quickstart", "agent-gateway")
WEATHER = ResourceKey("ServiceAccount", "tools", "weather-server")
AGENT = ResourceKey("ServiceAccount", "agents", "research-agent")


@pytest.fixture
def mesh(certificates):
    return Mesh(_documents(), certificates)


def _doc(mesh: Mesh, kind: str, namespace: str, name: str) -> dict:
    return copy.deepcopy(mesh.objects[ResourceKey(kind, namespace, name)].model_dump(
        by_alias=True, exclude_none=True, mode="json"))


def _route_to(name: str, gateway: str, backend: str) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "quickstart"},
            "spec": {"parentRefs": [{"name": gateway}], "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                "backendRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": backend}]}]}}


def _check(mesh: Mesh, upserts=(), deletes=(), *, rebuilt=(), untouched=()) -> None:
    before = {node: mesh.publisher.cache.get(node) for node in mesh.publisher.cache.node_keys()}
    mesh.change([parse_object(d) if isinstance(d, dict) else d for d in upserts], deletes)
    mesh.assert_same_as_full()
    for node in rebuilt:
        assert mesh.publisher.cache.get(node) != before.get(node), f"{node} kept a stale snapshot"
    for node in untouched:
        assert mesh.publisher.cache.get(node) is before[node], f"{node} was rebuilt for nothing"


def test_a_new_route_attaching_to_a_gateway_rebuilds_it(mesh):
    _check(mesh, [_route_to("extra", "agent-gateway", "everything-mcp")], rebuilt=["gateway~quickstart~agent-gateway"])


def test_a_new_policy_on_a_backend_a_view_reads(mesh):
    policy = _doc(mesh, "XAccessPolicy", "quickstart", "everything-tool-grants")
    policy["metadata"]["name"] = "second-grants"
    policy["spec"]["rules"] = policy["spec"]["rules"][:1]
    _check(mesh, [policy], rebuilt=["gateway~quickstart~agent-gateway"], untouched=["sidecar~tools~weather-server"])


def test_a_new_policy_on_the_gateway(mesh):
    policy = _doc(mesh, "XAccessPolicy", "quickstart", "quickstart-agents-only")
    policy["metadata"]["name"] = "second-gate"
    _check(mesh, [policy], rebuilt=["gateway~quickstart~agent-gateway"])


def test_a_rate_limit_policy_targeting_a_backend(mesh):
    limit = {"apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "RateLimitPolicy",
             "metadata": {"name": "weather-limit", "namespace": "tools"},
             "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                      "name": "weather-mcp"}],
                      "limits": [{"name": "l", "requests": 3, "per": "Minute"}]}}
    _check(mesh, [limit], rebuilt=["sidecar~tools~weather-server"], untouched=["gateway~quickstart~agent-gateway"])


def test_a_guardrail_policy_targeting_a_backend_and_its_deletion(mesh):
    guardrail = {"apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "GuardrailPolicy",
                 "metadata": {"name": "weather-guard", "namespace": "tools"},
                 "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                          "name": "weather-mcp"}],
                          "service": {"address": "127.0.0.1:9"}}}
    _check(mesh, [guardrail], rebuilt=["sidecar~tools~weather-server"], untouched=["gateway~quickstart~agent-gateway"])
    _check(mesh, deletes=[ResourceKey("GuardrailPolicy", "tools", "weather-guard")],
           rebuilt=["sidecar~tools~weather-server"])


def test_a_policy_that_revokes_an_agents_reach_rebuilds_the_agent(mesh):
    key = next(k for k in mesh.objects if k.kind == "XAccessPolicy" and k.namespace == "tools")
    policy = _doc(mesh, key.kind, key.namespace, key.name)
    for rule in policy["spec"]["rules"]:
        rule["source"] = {"type": "ServiceAccount", "serviceAccount": {"name": "someone-else", "namespace": "x"}}
    _check(mesh, [policy], rebuilt=["sidecar~agents~research-agent"])


def test_a_service_appearing_that_an_existing_xbackend_names(mesh):
    service = _doc(mesh, "Service", "tools", "weather")
    _check(mesh, deletes=[service_key := ResourceKey("Service", "tools", "weather")],
           rebuilt=["sidecar~tools~weather-server"])
    _check(mesh, [parse_object(service)], rebuilt=["sidecar~tools~weather-server", "sidecar~agents~research-agent"])
    assert service_key in mesh.objects


def test_a_pod_appearing_and_moving_makes_and_removes_workloads(mesh):
    pod = _doc(mesh, "Pod", "tools", "weather-0")
    _check(mesh, deletes=[ResourceKey("Pod", "tools", "weather-0")], rebuilt=["sidecar~tools~weather-server"])
    _check(mesh, [pod], rebuilt=["sidecar~tools~weather-server", "sidecar~agents~research-agent"])
    pod["spec"]["serviceAccountName"] = "other-server"
    _check(mesh, [pod], rebuilt=["sidecar~agents~research-agent"])
    assert "sidecar~tools~other-server" in mesh.publisher.cache.node_keys()


def test_a_serviceaccount_making_a_workload(mesh):
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fresh", "namespace": "agents"}}
    _check(mesh, [account], untouched=["gateway~quickstart~agent-gateway"])
    assert "sidecar~agents~fresh" in mesh.publisher.cache.node_keys()
    _check(mesh, deletes=[ResourceKey("ServiceAccount", "agents", "fresh")])
    assert "sidecar~agents~fresh" not in mesh.publisher.cache.node_keys()


def test_renaming_a_parent_ref_rebuilds_the_old_and_the_new_gateway(mesh):
    second = _doc(mesh, "Gateway", "quickstart", "agent-gateway")
    second["metadata"]["name"] = "second-gateway"
    _check(mesh, [second])
    route = _doc(mesh, "HTTPRoute", "quickstart", "everything-route")
    route["spec"]["parentRefs"][0]["name"] = "second-gateway"
    _check(mesh, [route], rebuilt=["gateway~quickstart~agent-gateway", "gateway~quickstart~second-gateway"])


def test_a_reference_grant_and_a_deletion(mesh):
    grant_key = next(k for k in mesh.objects if k.kind == "ReferenceGrant")
    _check(mesh, deletes=[grant_key])
    _check(mesh, deletes=[ResourceKey("XBackend", "quickstart", "everything-mcp")],
           rebuilt=["gateway~quickstart~agent-gateway"])


def test_an_untouched_gateway_builds_no_view(mesh):
    mesh.publisher.publish(set())
    assert mesh.publisher.views_built == 0
