"""Per-Gateway proxy infrastructure: rendered objects are valid Kubernetes objects and a real Envoy accepts
the bootstrap; reconcile applies them to an API server and removes those of a Gateway that is gone."""

from __future__ import annotations

import asyncio
import base64
import gc
import time
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestServer

from controlplane.api.base import ResourceKey
from controlplane.api.registry import parse_object
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.identity.spiffe import spiffe_id
from controlplane.identity.xds_auth import spiffe_ids_of_cert
from controlplane.kube.client import KubeApi
from controlplane.kube.provisioner import (
    GatewayProvisioner,
    render_credentials_secret,
    render_gateway_infrastructure,
)
from tests.kube.fakeapi import flag
from tests.kube.status_fakeapi import FakeApi
from tests.support.envoy import EnvoyProcess, free_ports, http_get, validate

RENDER = {"proxy_image": "envoyproxy/envoy:v1.40-latest", "xds_address": "agentic-cp-xds.cp-system.svc:15010",
          "trust_domain": "example.org", "namespace_of_control_plane": "cp-system"}


def gateway(name: str = "gw", namespace: str = "apps", *, uid: str | None = None, infrastructure: dict | None = None,
            listeners: list[dict] | None = None):
    spec = {"gatewayClassName": "ours", "listeners": listeners or [
        {"name": "https", "protocol": "HTTPS", "port": 10443},
        {"name": "http", "protocol": "HTTP", "port": 8080},
        {"name": "http-web", "protocol": "HTTP", "port": 8080, "hostname": "web.example.com"},
    ]}
    if infrastructure:
        spec["infrastructure"] = infrastructure
    return parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                         "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}"},
                         "spec": spec})


def deserialize(obj: dict, model: str):
    from kubernetes.client import ApiClient

    return ApiClient()._ApiClient__deserialize(obj, model)  # the official client's own decoder


# --- rendering ---------------------------------------------------------------------------------------------


def test_rendered_objects_are_valid_kubernetes_objects_owned_by_the_gateway():
    gw = gateway(infrastructure={"labels": {"team": "agents", "app.kubernetes.io/managed-by": "someone-else"},
                                 "annotations": {"example.com/cost-center": "42"}})
    objects = render_gateway_infrastructure(gw, **RENDER)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "gw"), ("ConfigMap", "gw-envoy"), ("Service", "gw-envoy"), ("Deployment", "gw-envoy")]
    models = {"ServiceAccount": "V1ServiceAccount", "ConfigMap": "V1ConfigMap", "Service": "V1Service",
              "Deployment": "V1Deployment"}
    typed = {o["kind"]: deserialize(o, models[o["kind"]]) for o in objects}
    for kind, obj in typed.items():
        meta = obj.metadata
        assert meta.namespace == "apps", kind
        owner = meta.owner_references[0]
        assert (owner.api_version, owner.kind, owner.name, owner.uid, owner.controller,
                owner.block_owner_deletion) == ("gateway.networking.k8s.io/v1", "Gateway", "gw", "uid-apps-gw",
                                                True, True)
        assert meta.labels["gateway.networking.k8s.io/gateway-name"] == "gw"
        assert meta.labels["app.kubernetes.io/managed-by"] == "agentic-cp"  # ours win over infrastructure
        assert meta.labels["team"] == "agents"
        assert meta.annotations == {"example.com/cost-center": "42"}

    service = typed["Service"]
    assert service.spec.type == "LoadBalancer"
    assert sorted((p.name, p.port, p.target_port) for p in service.spec.ports) == [
        ("http-8080", 8080, 8080), ("https-10443", 10443, 10443)]
    assert service.spec.selector == {"app.kubernetes.io/name": "agentic-gateway",
                                     "app.kubernetes.io/instance": "gw",
                                     "gateway.networking.k8s.io/gateway-name": "gw"}

    deployment = typed["Deployment"]
    assert deployment.spec.replicas == 1
    template = deployment.spec.template
    assert deployment.spec.selector.match_labels.items() <= template.metadata.labels.items()
    assert template.metadata.labels["team"] == "agents"
    assert template.metadata.labels["gateway.networking.k8s.io/gateway-name"] == "gw"
    assert template.metadata.annotations["example.com/cost-center"] == "42"
    pod = template.spec
    assert pod.service_account_name == "gw"
    assert pod.security_context.run_as_non_root and pod.security_context.sysctls[0].value == "0"
    (container,) = pod.containers
    assert container.image == "envoyproxy/envoy:v1.40-latest"
    assert container.args == ["-c", "/etc/envoy/envoy.yaml", "--base-id", "0", "--file-flush-interval-msec", "1000"]
    assert container.readiness_probe.http_get.path == "/ready"
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    sources = pod.volumes[0].projected.sources
    assert sources[0].config_map.name == "gw-envoy" and sources[1].secret.name == "gw-envoy-xds"
    assert {m.mount_path for m in container.volume_mounts} >= {"/etc/envoy"}


def test_bootstrap_names_the_gateway_node_and_pins_the_control_plane():
    objects = render_gateway_infrastructure(gateway("agent-gateway", "quickstart"), **RENDER)
    data = objects[1]["data"]
    assert set(data) == {"envoy.yaml", "sds-xds-client-cert.yaml", "sds-xds-trust-bundle.yaml"}
    bootstrap = yaml.safe_load(data["envoy.yaml"])
    assert bootstrap["node"]["id"] == "gateway~quickstart~agent-gateway"
    (xds,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster"]
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("agentic-cp-xds.cp-system.svc", 15010)
    tls = xds["transport_socket"]["typed_config"]
    pinned = tls["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert pinned["match_typed_subject_alt_names"][0]["matcher"]["exact"] == \
        "spiffe://example.org/ns/cp-system/sa/agentic-cp"
    sds = yaml.safe_load(data["sds-xds-client-cert.yaml"])["resources"][0]["tls_certificate"]
    assert sds["certificate_chain"]["filename"] == "/etc/envoy/cert.pem"
    assert sds["watched_directory"]["path"] == "/etc/envoy"


def test_gateway_read_from_a_directory_gets_no_owner_reference():
    gw = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                       "metadata": {"name": "gw", "namespace": "apps"},
                       "spec": {"gatewayClassName": "ours",
                                "listeners": [{"name": "h", "protocol": "HTTP", "port": 80}]}})
    for obj in render_gateway_infrastructure(gw, **RENDER):
        assert "ownerReferences" not in obj["metadata"]


def test_real_envoy_loads_the_mounted_files_and_serves_the_readiness_probe(tmp_path: Path):
    """What the pod sees at /etc/envoy (ConfigMap + Secret in one projected volume), as a directory."""
    ca = CertificateAuthority.create(trust_domain="example.org")
    gw = gateway("gw", "apps", listeners=[{"name": "h", "protocol": "HTTP", "port": 8080}])
    admin, ready = free_ports(2)
    objects = render_gateway_infrastructure(gw, **RENDER, config_dir=str(tmp_path), admin_port=admin,
                                            ready_port=ready)
    for name, content in objects[1]["data"].items():
        (tmp_path / name).write_text(content)
    # No xDS server here: Envoy binds its listeners once the initial CDS/LDS fetch gives up (15 s by
    # default; 1 s for this test), as it would after a real control plane answered.
    bootstrap = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    for source in ("cds_config", "lds_config"):
        bootstrap["dynamic_resources"][source]["initial_fetch_timeout"] = "1s"
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(bootstrap))
    identity = ca.issue(spiffe_id("example.org", "apps", "gw"))
    secret = render_credentials_secret(gw, cert_chain_pem=identity.chain_pem, key_pem=identity.key_pem,
                                       bundle_pem=ca.bundle_pem)
    for name, content in secret["stringData"].items():
        (tmp_path / name).write_text(content)
    check = validate(tmp_path / "envoy.yaml", timeout=60)
    assert check.returncode == 0, check.stderr[-2000:]
    with EnvoyProcess.start(tmp_path / "envoy.yaml", log_path=tmp_path / "envoy.log", log_level="warning") as envoy:
        deadline = time.monotonic() + 20
        status, body = 0, ""
        while time.monotonic() < deadline and envoy.running():
            try:
                status, body = http_get(f"http://127.0.0.1:{ready}/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        # Envoy's admin answers /ready itself: 503 while it waits for its (absent) xDS server, 200 once LIVE
        assert status in (200, 503) and body.strip() in ("LIVE", "PRE_INITIALIZING", "INITIALIZING"), (status, body)
        assert http_get(f"http://127.0.0.1:{ready}/stats")[0] == 404  # nothing else of the admin is exposed


# --- reconciling against an API server -------------------------------------------------------------------


class Elector:
    def __init__(self, leading: bool):
        self.is_leader = leading


# An aiohttp session or connector left unclosed is a failure naming it, whether it is dropped during the
# test (its __del__ warns at once) or only collected later (a cycle): `collect_at_teardown` makes that now.
pytestmark = [pytest.mark.filterwarnings("error::ResourceWarning"),
              pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(autouse=True)
def collect_at_teardown():
    yield
    gc.collect()


@pytest.fixture
async def fake():
    api = FakeApi()
    server = TestServer(api.app())
    await server.start_server()
    client = KubeApi(host=str(server.make_url("")).rstrip("/"))
    yield api, client
    await client.close()
    await server.close()


def _provisioner(client: KubeApi, ca: CertificateAuthority, **kwargs) -> GatewayProvisioner:
    kwargs.setdefault("issuer", CertificateManager(ca))
    return GatewayProvisioner(api=client, **RENDER, **kwargs)


async def test_reconcile_creates_updates_and_deletes(fake):
    api, client = fake
    ca = CertificateAuthority.create(trust_domain="example.org")
    provisioner = _provisioner(client, ca)
    one, two = gateway("one", "apps"), gateway("two", "team")
    # an object of someone else, and a ConfigMap of ours for a Gateway long gone
    api.objects[("configmaps", "apps", "unrelated")] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unrelated", "namespace": "apps", "resourceVersion": "1", "labels": {"x": "y"}}}
    api.objects[("configmaps", "old", "gone-envoy")] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "gone-envoy", "namespace": "old", "resourceVersion": "1", "labels": {
            "app.kubernetes.io/managed-by": "agentic-cp", "gateway.networking.k8s.io/gateway-name": "gone"}}}

    result = await provisioner.reconcile([one, two])
    for ns, name in (("apps", "one"), ("team", "two")):
        assert (ns, name) in api.names("serviceaccounts")
        for plural in ("configmaps", "services", "deployments"):
            assert (ns, f"{name}-envoy") in api.names(plural), plural
        assert (ns, f"{name}-envoy-xds") in api.names("secrets")
    assert ("old", "gone-envoy") not in api.names("configmaps")
    assert ("apps", "unrelated") in api.names("configmaps")
    applies = [r for r in api.requests if r.method == "PATCH"]
    assert len(applies) == 10
    assert all(r.content_type == "application/apply-patch+yaml" and r.query.keys() == {"fieldManager", "force"}
               and r.query["fieldManager"] == "agentic-cp" and flag(r.query, "force") for r in applies)
    # the Secret carries a certificate for the proxy's own SPIFFE ID
    secret = api.get("secrets", "team", "two-envoy-xds")
    cert = base64.b64decode(secret["data"]["cert.pem"])
    assert spiffe_ids_of_cert(cert) == ["spiffe://example.org/ns/team/sa/two"]
    # no load balancer yet: the ClusterIP stands in (reachable in the cluster), and the proxy is not ready
    cluster_ip = api.get("services", "team", "two-envoy")["spec"]["clusterIP"]
    assert result[ResourceKey("Gateway", "team", "two")].addresses == [{"type": "IPAddress", "value": cluster_ip}]
    assert result[one.key].ready is False

    # the cloud assigns an address, the Deployment becomes available; nothing else changes
    api.objects[("services", "apps", "one-envoy")]["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    api.objects[("deployments", "apps", "one-envoy")]["status"] = {"availableReplicas": 1}
    versions = {k: o["metadata"]["resourceVersion"] for k, o in api.objects.items()}
    result = await provisioner.reconcile([one, two])
    assert result[one.key].addresses == [{"type": "IPAddress", "value": "203.0.113.9"}]
    assert result[one.key].ready is True
    assert result[ResourceKey("Gateway", "team", "two")].addresses == [{"type": "IPAddress", "value": cluster_ip}]
    assert {k: o["metadata"]["resourceVersion"] for k, o in api.objects.items()} == versions  # no-op applies
    strict = _provisioner(client, ca, cluster_ip_fallback=False, issuer=None)
    assert (await strict.reconcile([one, two]))[ResourceKey("Gateway", "team", "two")].addresses == []

    # Gateway "two" is deleted (or leaves our class): its objects go, "one"'s stay
    await provisioner.reconcile([one])
    left = {(p, ns, n) for (p, ns, n) in api.objects if ns == "team"}
    assert left == set()
    assert ("apps", "one-envoy") in api.names("deployments")
    deletes = [r for r in api.requests if r.method == "DELETE"]
    assert all(r.query.get("propagationPolicy") == "Background" for r in deletes)


async def test_follower_only_reads_and_unlistable_kinds_do_not_stop_cleanup(fake):
    api, client = fake
    ca = CertificateAuthority.create(trust_domain="example.org")
    gw = gateway("one", "apps")
    follower = _provisioner(client, ca, elector=Elector(False))
    await follower.reconcile([gw])
    assert {r.method for r in api.requests} <= {"GET"}
    assert api.objects == {}

    leader = _provisioner(client, ca, elector=Elector(True))
    await leader.reconcile([gw])
    api.forbidden.add("secrets")  # a chart without RBAC on Secrets: ownerReferences clean those up instead
    result = await leader.reconcile([])
    assert result == {}
    assert api.names("deployments") == set() and api.names("configmaps") == set()
    assert api.names("serviceaccounts") == set()


async def test_one_gateway_failing_does_not_stop_the_others(fake):
    api, client = fake
    ca = CertificateAuthority.create(trust_domain="example.org")
    provisioner = _provisioner(client, ca)
    api.forbidden.add("deployments")
    result = await provisioner.reconcile([gateway("a", "apps"), gateway("b", "apps")])
    assert all(info.error and "403" in info.error for info in result.values())
    assert api.names("serviceaccounts") == {("apps", "a"), ("apps", "b")}
    await asyncio.sleep(0)
