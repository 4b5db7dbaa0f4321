"""The egress role's inputs, each hostile: malformed annotations, missing or half-written CA ConfigMaps and
credential Secrets refuse the XBackend with one line (fail closed), and a credential never appears in the
view's repr, the offline translation or a redacted config dump."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controlplane.admin.redact import redact
from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.egress import egress_settings
from controlplane.api.registry import parse_object
from controlplane.commands.translate import offline_resources
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.view import egress_view, managed_gateways, sidecar_view
from controlplane.identity import xds_auth
from controlplane.kube.provisioner import envoy_name
from controlplane.translate.roles import egress

MANIFEST = Path(__file__).parent / "testdata" / "egress" / "egress.yaml"
EGRESS = ResourceKey("Gateway", "providers", "egress")
DEEPWIKI = ResourceKey("XBackend", "providers", "deepwiki")


def graph_with(*patches: dict) -> AuthorizationGraph:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    for patch in patches:
        docs = [d for d in docs if (d["kind"], d["metadata"]["name"]) != (patch["kind"], patch["metadata"]["name"])]
        if not patch.get("delete"):
            docs.append(patch)
    graph = AuthorizationGraph()
    graph.apply(ChangeSet(upserts=[parse_object(d) for d in docs]))
    return graph


def deepwiki(**annotations) -> dict:
    return {"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend",
            "metadata": {"name": "deepwiki", "namespace": "providers", "annotations": annotations},
            "spec": {"mcp": {"hostname": "mcp.deepwiki.example", "port": 443}}}


def refusal(graph: AuthorizationGraph, key: ResourceKey = DEEPWIKI) -> str | None:
    return dict(egress_view(graph, EGRESS).refused).get(key)


def test_the_manifest_serves_two_and_refuses_the_unnamed_one():
    view = egress_view(graph_with(), EGRESS)
    assert [e.backend.key.name for e in view.backends] == ["deepwiki", "public-docs"]
    assert "no XAccessPolicy" in refusal(graph_with(), ResourceKey("XBackend", "providers", "nobody-named-it"))
    assert EGRESS not in managed_gateways(graph_with())  # no gateway~ config for an egress Gateway


@pytest.mark.parametrize(("annotations", "words"), [
    ({"governance.agentic-cp.dev/egress-ca": "deepwiki-ca"}, "want ConfigMap/NAME"),
    ({"governance.agentic-cp.dev/egress-ca": "Pod/x"}, "want ConfigMap/NAME"),
    ({"governance.agentic-cp.dev/egress-ca": "ConfigMap/"}, "want ConfigMap/NAME"),
    ({"governance.agentic-cp.dev/egress-credential": "Bad_Name"}, "want SECRET"),
    ({"governance.agentic-cp.dev/egress-credential": "key/"}, "want SECRET"),
    ({"governance.agentic-cp.dev/egress-credential": "deepwiki-key/token",
      "governance.agentic-cp.dev/egress-credential-header": "Host"}, "not a header"),
    ({"governance.agentic-cp.dev/egress-credential": "deepwiki-key/token",
      "governance.agentic-cp.dev/egress-credential-header": "x api\nkey"}, "not a header"),
    ({"governance.agentic-cp.dev/egress-credential-header": "x-api-key"}, "is not"),
])
def test_malformed_annotations_refuse_the_backend_with_one_line(annotations, words):
    with pytest.raises(ValueError, match=words):
        egress_settings(annotations)
    reason = refusal(graph_with(deepwiki(**annotations)))
    assert reason is not None and words.split()[0] in reason and "\n" not in reason


@pytest.mark.parametrize(("patch", "words"), [
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deepwiki-ca"}, "delete": True}, "holds no PEM"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deepwiki-ca", "namespace": "providers"},
      "data": {"ca.crt": "not a certificate"}}, "holds no PEM"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "deepwiki-key"}, "delete": True}, "no usable"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "deepwiki-key", "namespace": "providers"},
      "data": {"token": "%%%not-base64"}}, "no usable"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "deepwiki-key", "namespace": "providers"},
      "stringData": {"token": "two\nlines"}}, "no usable"),
])
def test_missing_or_broken_ca_and_credential_refuse_the_backend(patch, words):
    reason = refusal(graph_with(patch))
    assert reason is not None and words in reason
    assert "two" not in reason and "not-base64" not in reason  # never a Secret's value in a reason


def test_the_credential_is_only_in_the_sds_secret_and_redacted_there():
    graph = graph_with()
    view = egress_view(graph, EGRESS)
    assert "golden-not-a-real-key" not in repr(view)
    offline = json.dumps([r.payload for r in offline_resources(graph, EGRESS)])
    assert "golden-not-a-real-key" not in offline
    [secret] = egress.credential_secrets(view)
    assert secret.name == "credential/providers/deepwiki"
    assert "Z29sZGVuLW5vdC1hLXJlYWwta2V5" in json.dumps(secret.payload)  # base64 of the value, over SDS only
    assert "Z29sZGVuLW5vdC1hLXJlYWwta2V5" not in json.dumps(redact(secret.payload))


def test_the_system_bundle_is_configurable():
    resources = egress.egress_resources(graph_with(), EGRESS, secrets=[], system_ca="/etc/pki/tls/cert.pem")
    docs = json.dumps([r.payload for r in resources if r.name == "xbackend/providers/public-docs"])
    assert "/etc/pki/tls/cert.pem" in docs and egress.DEBIAN_CA_BUNDLE not in docs


def test_sidecars_reach_the_egress_by_its_provisioned_service_and_only_for_named_backends():
    graph = graph_with({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "intern", "namespace": "agents"}})
    research = sidecar_view(graph, ResourceKey("ServiceAccount", "agents", "research-agent"))
    intern = sidecar_view(graph, ResourceKey("ServiceAccount", "agents", "intern"))
    assert {e.backend.name for e in research.egress} == {"deepwiki", "public-docs"}
    assert {e.backend.name for e in intern.egress} == {"public-docs"}  # deepwiki's rule names research only
    assert research.egress[0].egress_address.startswith(envoy_name("egress") + ".providers.svc.")
    assert EGRESS in research.reads


def test_egress_node_ids_and_roles():
    node = xds_auth.node_id_for_egress("providers", "egress")
    assert node == "egress~providers~egress"
    assert xds_auth.expected_spiffe_id("cluster.local", node) == "spiffe://cluster.local/ns/providers/sa/egress"
    with pytest.raises(ValueError, match="egress~NS~NAME"):
        xds_auth.parse_node_id("egress~providers")
