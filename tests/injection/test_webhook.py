"""The injection webhook over real HTTPS (the mesh CA's certificate for the Service's DNS name), with
real AdmissionReview v1 JSON: a Pod injected by JSONPatch, malformed reviews, non-Pods, hostile Pods."""

from __future__ import annotations

import base64
import copy
import json
import ssl

import aiohttp
import pytest

from controlplane.identity.ca import CertificateAuthority
from controlplane.translate.injection import PROXY_CONTAINER, MeshSettings
from controlplane.webhook.review import json_patch
from controlplane.webhook.server import WebhookServer, service_dns_names, tls_context
from tests.injection.pods import as_model, pod
from tests.support.envoy import free_port

SERVICE, NAMESPACE = "agentic-cp-webhook", "agentic-system"
HOST = f"{SERVICE}.{NAMESPACE}.svc"


def review(obj, *, kind="Pod", operation="CREATE", uid="8e0c5b4a-1") -> dict:
    """An AdmissionReview as kube-apiserver sends it for a create."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "requestKind": {"group": "", "version": "v1", "kind": kind}, "namespace": "tools",
        "operation": operation, "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj, "oldObject": None, "dryRun": False}}


def apply_patch(obj: dict, ops: list[dict]) -> dict:
    """RFC 6902 add/replace (all the webhook emits), strict: a path must exist where the op says so."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = out
        for part in parents:
            node = node[part]
        assert op["op"] in ("add", "replace")
        assert (last in node) == (op["op"] == "replace"), op["path"]
        node[last] = op["value"]
    return out


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(trust_domain="cluster.local")


@pytest.fixture
async def webhook(ca):
    port = free_port()
    context = tls_context(ca, spiffe_id="spiffe://cluster.local/ns/agentic-system/sa/agentic-cp",
                          dns_names=service_dns_names(SERVICE, NAMESPACE))
    server = WebhookServer(mesh=MeshSettings(), context=context, host="127.0.0.1", port=port)
    await server.start()
    client_tls = ssl.create_default_context(cadata=ca.bundle_pem.decode())  # what the caBundle holds
    connector = aiohttp.TCPConnector(ssl=client_tls, resolver=_Resolve(HOST))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield lambda body: session.post(f"https://{HOST}:{port}/inject", data=body,
                                        headers={"Content-Type": "application/json"})
    await server.stop()


class _Resolve(aiohttp.abc.AbstractResolver):
    """The Service name to 127.0.0.1, so TLS checks the certificate against the name the apiserver dials."""

    def __init__(self, name: str):
        self.name = name

    async def resolve(self, host, port=0, family=0):
        assert host == self.name
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

    async def close(self):
        pass


async def post_json(post, body) -> tuple[int, object]:
    async with post(body) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def test_a_pod_create_is_answered_with_a_patch_that_yields_an_injected_v1pod(webhook):
    original = pod()
    original["metadata"].pop("namespace")  # as at create time: the request carries the namespace
    status, answer = await post_json(webhook, json.dumps(review(original)))
    assert status == 200 and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "8e0c5b4a-1" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = apply_patch(original, json.loads(base64.b64decode(response["patch"])))
    assert PROXY_CONTAINER in [c["name"] for c in patched["spec"]["containers"]]
    _, round_trip = as_model(patched, "V1Pod")
    assert round_trip == patched
    assert "namespace" not in patched["metadata"], "the patch touches only what injection changed"


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (b"[]", "not an admission.k8s.io/v1 AdmissionReview"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(), "not an admission"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "request: missing"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}).encode(),
     "request.uid"),
    (b"[" * 100_000, "not JSON"),
])
async def test_a_malformed_review_is_a_400_with_one_line(webhook, body, message):
    status, text = await post_json(webhook, body)
    assert status == 400 and message in text and text.count("\n") == 1


async def test_a_body_over_the_limit_is_refused(webhook):
    status, _ = await post_json(webhook, b" " * (5 * 1024 * 1024))
    assert status == 413


@pytest.mark.parametrize("kind, operation", [("Service", "CREATE"), ("Pod", "UPDATE"), ("Pod", "DELETE")])
async def test_anything_but_a_pod_create_is_allowed_unchanged(webhook, kind, operation):
    status, answer = await post_json(webhook, json.dumps(review(pod(), kind=kind, operation=operation)))
    assert status == 200 and answer["response"] == {"uid": "8e0c5b4a-1", "allowed": True}


async def test_an_opted_out_or_injected_pod_is_allowed_unchanged(webhook):
    opted_out = pod()
    opted_out["metadata"]["labels"] = {"agentic-cp.dev/inject": "false"}
    for obj in (opted_out, pod(hostNetwork=True)):
        _, answer = await post_json(webhook, json.dumps(review(obj)))
        assert answer["response"] == {"uid": "8e0c5b4a-1", "allowed": True}


@pytest.mark.parametrize("obj", [
    {**pod(), "spec": {"containers": "app"}},
    {**pod(), "spec": {}},
    pod(serviceAccountName="x" * 400),
    "a string",
])
async def test_a_pod_that_cannot_be_injected_is_denied_not_admitted_bare(webhook, obj):
    status, answer = await post_json(webhook, json.dumps(review(obj)))
    assert status == 200
    response = answer["response"]
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 403 and response["status"]["message"]


def test_json_patch_escapes_keys_and_adds_missing_sections():
    before = {"metadata": {"a/b": 1}}
    after = {"metadata": {"a/b": 2, "c~d": 3}, "spec": {"x": 1}}
    ops = json_patch(before, after)
    assert ops == [{"op": "replace", "path": "/metadata/a~1b", "value": 2},
                   {"op": "add", "path": "/metadata/c~0d", "value": 3},
                   {"op": "add", "path": "/spec", "value": {"x": 1}}]
    assert apply_patch(before, ops) == after
