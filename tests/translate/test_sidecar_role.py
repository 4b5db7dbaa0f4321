"""The sidecar role: the features' hooks per side, the workload view, and what the controller publishes.

The golden cases (testdata/in/sidecar-*.yaml) show the whole translation; these tests name the
decisions: which features act on which side, which destinations a workload's config holds, and that a
sidecar is published only under its own node id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.controller import ControlPlane, Publisher, Settings
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.view import GatewayView, sidecar_view, workloads
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.identity.sds import WORKLOAD_CERT_SECRET
from controlplane.identity.xds_auth import spiffe_ids_of_cert
from controlplane.sources.directory import DirectorySource
from controlplane.translate.context import SIDECAR_INBOUND, SIDECAR_OUTBOUND, PortContext, ProxyContext
from controlplane.translate.features import FEATURES
from controlplane.translate.roles.sidecar import INBOUND_PORT, OUTBOUND_PORT, sidecar_resources
from controlplane.xds import resources as types
from controlplane.xds.cache import SnapshotCache

MESH = Path(__file__).parent / "testdata" / "mesh"
TOOL = ResourceKey("ServiceAccount", "tools", "weather-server")
RESEARCH = ResourceKey("ServiceAccount", "agents", "research-agent")
INTERN = ResourceKey("ServiceAccount", "agents", "intern-agent")


def mesh_graph() -> AuthorizationGraph:
    graph = AuthorizationGraph()
    graph.apply(DirectorySource(MESH).load())
    return graph


def filters_on(role: str) -> list[str]:
    port = PortContext(ProxyContext(role, GatewayView(TOOL, ())), 15000, False, ())
    return [f["name"] for feature in FEATURES for f in feature.http_filters(port)]


def test_policy_filters_sit_on_the_inbound_side_only():
    inbound, outbound = filters_on(SIDECAR_INBOUND), filters_on(SIDECAR_OUTBOUND)
    assert {"envoy.filters.http.mcp", "envoy.filters.http.rbac.backend", "envoy.filters.http.ext_authz.backend"} <= \
        set(inbound)
    assert outbound == ["envoy.filters.http.router"]  # the agent's side routes; the tool's side decides
    assert filters_on("gateway") == inbound


def test_workloads_come_from_service_accounts_pods_and_endpoint_slices():
    assert workloads(mesh_graph()) == [INTERN, RESEARCH, TOOL]


def test_the_tool_serves_its_xbackend_with_its_policies_and_reaches_nothing():
    view = sidecar_view(mesh_graph(), TOOL)
    assert [(e.service.name, e.app_port) for e in view.inbound] == [("weather", 3001)]
    backend = view.inbound[0].rule.backends[0].backend
    assert backend.key.name == "weather-mcp" and [p.key.name for p in backend.policies] == ["weather-grants"]
    assert view.outbound == ()


def test_an_agent_reaches_only_what_a_rule_names_it_for():
    graph = mesh_graph()
    research = sidecar_view(graph, RESEARCH)
    assert [(o.backend.name, o.addresses, o.peers) for o in research.outbound] == [
        ("weather-mcp", ("10.244.0.5",), ("spiffe://cluster.local/ns/tools/sa/weather-server",))]
    assert sidecar_view(graph, INTERN).outbound == ()
    assert sidecar_resources(graph, INTERN, secrets=[]) == []  # no listener: its connections are refused


def test_an_endpoint_without_a_pod_names_no_workload():
    graph = mesh_graph()
    graph.apply(ChangeSet(deletes=[ResourceKey("Pod", "tools", "weather-0")]))
    assert TOOL not in workloads(graph)
    assert sidecar_view(graph, RESEARCH).outbound == ()  # no certificate it could pin: not configured


def test_the_sides_listen_on_istios_ports():
    graph = mesh_graph()
    tool = {r.name: r.payload for r in sidecar_resources(graph, TOOL, secrets=[]) if r.type_url == types.LISTENER}
    agent = {r.name: r.payload for r in sidecar_resources(graph, RESEARCH, secrets=[])
             if r.type_url == types.LISTENER}
    assert [lst["address"]["socketAddress"] for lst in tool.values()] == [
        {"address": "0.0.0.0", "portValue": INBOUND_PORT}]
    assert "transportSocket" in tool[f"listener-{INBOUND_PORT}"]["filterChains"][0]  # STRICT mTLS
    assert [lst["address"]["socketAddress"] for lst in agent.values()] == [
        {"address": "127.0.0.1", "portValue": OUTBOUND_PORT}]


def test_both_sides_accept_captured_connections_by_their_original_destination():
    """iptables REDIRECT rewrites the destination; `original_dst` restores it and `useOriginalDst` tells
    Envoy the arrival port is not the dialled one. The outbound side stays on loopback (captured packets
    from the pod's own processes are redirected to 127.0.0.1), so explicit-proxy use keeps working."""
    graph = mesh_graph()
    listeners = [r.payload for key in (TOOL, RESEARCH) for r in sidecar_resources(graph, key, secrets=[])
                 if r.type_url == types.LISTENER]
    assert len(listeners) == 2
    for lst in listeners:
        assert lst["useOriginalDst"] is True
        assert [f["name"] for f in lst["listenerFilters"]] == ["envoy.filters.listener.original_dst"]
        hcm = lst["filterChains"][0]["filters"][0]["typedConfig"]
        logged = hcm["accessLog"][0]["typedConfig"]["logFormat"]["jsonFormat"]
        assert logged["original_destination"] == "%DOWNSTREAM_LOCAL_ADDRESS%"


@pytest.fixture
def publisher():
    graph = mesh_graph()
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    return Publisher(graph=graph, cache=SnapshotCache(), certificates=CertificateManager(ca))


def test_each_sidecar_is_published_under_its_node_id_with_its_own_svid(publisher):
    publisher.publish()
    snapshot = publisher.cache.get("sidecar~tools~weather-server")
    assert snapshot is not None
    secret = Secret.parse(snapshot.resources(types.SECRET)[WORKLOAD_CERT_SECRET].body)
    assert spiffe_ids_of_cert(secret.tls_certificate.certificate_chain.inline_bytes) == [
        "spiffe://cluster.local/ns/tools/sa/weather-server"]
    assert publisher.cache.get("sidecar~agents~research-agent") is not None


def test_a_new_grant_reaches_an_agent_that_could_reach_nothing(publisher):
    publisher.publish()
    before = publisher.cache.get("sidecar~agents~intern-agent")
    policy = parse_object({
        "apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
        "metadata": {"name": "intern", "namespace": "tools"},
        "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "weather-mcp"}],
                 "action": "Allow", "rules": [{"name": "intern", "source": {
                     "type": "ServiceAccount", "serviceAccount": {"name": "intern-agent", "namespace": "agents"}}}]}})
    publisher.publish(publisher.graph.apply(ChangeSet(upserts=[policy])))
    after = publisher.cache.get("sidecar~agents~intern-agent")
    assert after != before
    assert f"listener-{OUTBOUND_PORT}" in after.resources(types.LISTENER)



def test_a_new_service_account_alone_gets_its_sidecar_published(tmp_path):
    """A ServiceAccount has no graph fragment, yet it is a new workload: the control plane publishes it."""
    plane = ControlPlane(source=None, settings=Settings(state_dir=tmp_path, trust_domain="cluster.local",
                                                        xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))
    plane.publisher = Publisher(graph=plane.graph, cache=plane.cache, certificates=plane.certificates)
    plane.apply(ChangeSet(upserts=list(DirectorySource(MESH).load().upserts), synced=True), publish=True)
    assert plane.cache.get("sidecar~agents~newcomer") is None
    newcomer = parse_object({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "newcomer", "namespace": "agents"}})
    plane.apply(ChangeSet(upserts=[newcomer]), publish=True)
    assert plane.cache.get("sidecar~agents~newcomer") is not None


def test_an_xbackend_rate_limit_is_enforced_by_the_tool_sidecar_inbound_and_not_by_the_agent():
    graph = mesh_graph()
    graph.apply(ChangeSet(upserts=[parse_object({
        "apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "RateLimitPolicy",
        "metadata": {"name": "weather-limit", "namespace": "tools"},
        "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "weather-mcp"}],
                 "limits": [{"name": "l", "requests": 5, "per": "Minute"}]}})]))

    def rate_limit_configs(workload: ResourceKey) -> list[dict]:
        routes = [r.payload for r in sidecar_resources(graph, workload, secrets=[]) if r.type_url == types.ROUTE]
        return [cluster["typedPerFilterConfig"]["envoy.filters.http.local_ratelimit.backend"]
                for rc in routes for vh in rc["virtualHosts"] for route in vh["routes"]
                for cluster in route.get("route", {}).get("weightedClusters", {}).get("clusters", [])
                if "envoy.filters.http.local_ratelimit.backend" in cluster.get("typedPerFilterConfig", {})]

    [inbound] = rate_limit_configs(TOOL)
    assert [d["tokenBucket"]["maxTokens"] for d in inbound["descriptors"]] == [5]
    assert rate_limit_configs(RESEARCH) == []  # the agent's outbound side only routes
    outbound = ProxyContext(SIDECAR_OUTBOUND, GatewayView(RESEARCH, ()))
    backend = sidecar_view(graph, TOOL).inbound[0].rule.backends[0]
    assert backend.backend.rate_limits and all(f.weighted_cluster_config(outbound, backend) == {}
                                               for f in FEATURES if f.name == "local_rate_limit")
