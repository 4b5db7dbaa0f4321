"""The MutatingWebhookConfiguration's caBundle kept current, against the fake API server (official client)."""

from __future__ import annotations

import base64

import pytest

from controlplane.identity.ca import CertificateAuthority
from controlplane.kube.client import ApiError, KubeApi
from controlplane.kube.kinds import ALL_KINDS, LEASE
from controlplane.kube.webhook_ca import MUTATING_WEBHOOK_CONFIGURATION as MWC
from controlplane.kube.webhook_ca import sync_ca_bundle, with_ca_bundle
from tests.kube.fakeapi import FakeApiServer

NAME = "agentic-cp-sidecar-injector"


def configuration(ca_bundle: str = "") -> dict:
    """As the chart renders it: two webhooks (namespace label, pod label), caBundle empty."""
    def webhook(name: str) -> dict:
        return {"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
                "clientConfig": {"service": {"name": "agentic-cp-webhook", "namespace": "agentic-system",
                                             "path": "/inject", "port": 443}, "caBundle": ca_bundle}}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": NAME},
            "webhooks": [webhook("namespace.inject.agentic-cp.dev"), webhook("object.inject.agentic-cp.dev")]}


@pytest.fixture
async def server():
    fake = FakeApiServer(kinds=ALL_KINDS + (LEASE, MWC))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def api(server):
    client = KubeApi(host=server.url)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(trust_domain="cluster.local")


def bundles(server) -> list[str]:
    return [w["clientConfig"]["caBundle"] for w in server.get(MWC, "", NAME)["webhooks"]]


async def test_the_ca_bundle_is_written_into_every_webhook_once(server, api, ca):
    server.create(configuration())
    assert await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem) is True
    assert [base64.b64decode(b) for b in bundles(server)] == [ca.bundle_pem, ca.bundle_pem]
    version = server.get(MWC, "", NAME)["metadata"]["resourceVersion"]
    assert await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem) is False
    assert server.get(MWC, "", NAME)["metadata"]["resourceVersion"] == version, "a current bundle is not rewritten"
    patches = [r for r in server.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == [f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{NAME}"]


async def test_a_bundle_emptied_by_helm_upgrade_is_set_again(server, api, ca):
    server.create(configuration(base64.b64encode(b"old").decode()))
    assert await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem) is True
    assert set(bundles(server)) == {base64.b64encode(ca.bundle_pem).decode()}
    assert server.get(MWC, "", NAME)["webhooks"][0]["failurePolicy"] == "Fail", "the rest of each webhook is kept"


async def test_a_missing_configuration_is_not_an_error(api, ca):
    assert await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem) is False


async def test_a_forbidden_read_is_an_api_error(server, api, ca):
    server.create(configuration())
    server.forbid("mutatingwebhookconfigurations", ("get",))
    with pytest.raises(ApiError) as err:
        await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem)
    assert err.value.status == 403


async def test_a_concurrent_edit_is_a_conflict_not_a_lost_write(server, api, ca):
    server.create(configuration())
    server.inject(method="PATCH", path_contains=NAME, status=409)
    with pytest.raises(ApiError) as err:
        await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem)
    assert err.value.status == 409
    assert await sync_ca_bundle(api, name=NAME, bundle_pem=ca.bundle_pem) is True  # the next round


@pytest.mark.parametrize("webhooks", ["text", ["text"]])
def test_a_half_written_configuration_is_a_value_error(webhooks, ca):
    with pytest.raises(ValueError, match="webhooks"):
        with_ca_bundle({"webhooks": webhooks}, ca.bundle_pem)
