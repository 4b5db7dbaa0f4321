"""The view records what a Gateway's translation read, and that record alone decides what a change republishes."""

from __future__ import annotations

import pytest
import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.controller import Publisher
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.view import gateway_view
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resources import ENDPOINT

GW = ResourceKey("Gateway", "apps", "gw")
NODE = "gateway~apps~gw"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours}
spec: {controllerName: sigs.k8s.io/kube-agentic-networking-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  gatewayClassName: ours
  listeners:
    - {name: live, protocol: HTTP, port: 8080}
    - {name: plain, protocol: HTTP, port: 9090}     # conflicted with `secure`: never programmed
    - {name: secure, protocol: HTTPS, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: mcp, namespace: apps}
spec: {ports: [{name: http, port: 3001}]}
---
apiVersion: v1
kind: Service
metadata: {name: unused, namespace: apps}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: tools, namespace: apps}
spec: {mcp: {serviceName: mcp, port: 3001}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: live, namespace: apps}
spec:
  parentRefs: [{name: gw, sectionName: live}]
  rules: [{backendRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: tools}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: dead, namespace: apps}
spec:
  parentRefs: [{name: gw, sectionName: plain}]
  rules: [{matches: [{path: {type: PathPrefix, value: /dead}}], backendRefs: [{name: unused, port: 80}]}]
"""


def _slice(address: str) -> object:
    return parse_object({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"name": "mcp-1", "namespace": "apps",
                                      "labels": {"kubernetes.io/service-name": "mcp"}},
                         "addressType": "IPv4", "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                         "ports": [{"name": "http", "port": 3001}]})


def _dead_route(prefix: str) -> object:
    doc = next(d for d in yaml.safe_load_all(MANIFESTS) if d and d["metadata"]["name"] == "dead")
    doc["spec"]["rules"][0]["matches"][0]["path"]["value"] = prefix
    return parse_object(doc)


@pytest.fixture
def publisher():
    graph = AuthorizationGraph()
    graph.apply(ChangeSet(upserts=[parse_object(d) for d in yaml.safe_load_all(MANIFESTS) if d], synced=True))
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    out = Publisher(graph=graph, cache=SnapshotCache(), certificates=CertificateManager(ca))
    out.publish()
    return out


def test_the_view_reads_what_translation_uses_and_nothing_else(publisher):
    reads = gateway_view(publisher.graph, GW).reads
    assert reads == {GW, ResourceKey("HTTPRoute", "apps", "live"), ResourceKey("XBackend", "apps", "tools")}
    assert publisher.reads(NODE) == reads


def test_a_change_the_translation_did_not_read_republishes_nothing(publisher):
    before = publisher.cache.get(NODE)
    changed = publisher.graph.apply(ChangeSet(upserts=[_dead_route("/still-dead")]))
    assert changed == {ResourceKey("HTTPRoute", "apps", "dead")}  # the route on the conflicted listener
    publisher.publish(changed)
    assert publisher.skipped == 1
    assert publisher.cache.get(NODE) is before


def test_a_change_to_what_it_read_republishes(publisher):
    changed = publisher.graph.apply(ChangeSet(upserts=[_slice("10.1.2.3")]))
    assert ResourceKey("XBackend", "apps", "tools") in changed
    publisher.publish(changed)
    assert publisher.skipped == 0
    endpoints = publisher.cache.get(NODE).resources(ENDPOINT)
    assert b"10.1.2.3" in b"".join(r.body for r in endpoints.values())
