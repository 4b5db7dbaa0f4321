"""The sidecar injection webhook in the chart: off by default; on, a MutatingWebhookConfiguration that
the official models parse, selecting pods as Istio does, its Service, and RBAC for its caBundle only."""

from __future__ import annotations

from tests.helm.helm_support import NAMESPACE, RELEASE, find, one, render
from tests.injection.pods import as_model

ON = {"injection": {"enabled": True}}


def test_the_webhook_is_off_by_default(default_objects):
    assert find(default_objects, "MutatingWebhookConfiguration") == []
    assert find(default_objects, "Service", f"{RELEASE}-webhook") == []


def test_on_it_renders_a_configuration_the_official_model_parses():
    objects = render(ON)
    config = one(objects, "MutatingWebhookConfiguration", f"{RELEASE}-sidecar-injector")
    _, round_trip = as_model(config, "V1MutatingWebhookConfiguration")
    assert round_trip == config
    by_name = {w["name"]: w for w in config["webhooks"]}
    assert set(by_name) == {"namespace.inject.agentic-cp.dev", "object.inject.agentic-cp.dev"}
    for webhook in by_name.values():
        assert webhook["sideEffects"] == "None" and webhook["failurePolicy"] == "Fail"
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["clientConfig"]["service"] == {"name": f"{RELEASE}-webhook", "namespace": NAMESPACE,
                                                      "path": "/inject", "port": 443}
        assert webhook["rules"][0]["resources"] == ["pods"] and webhook["rules"][0]["operations"] == ["CREATE"]
        excluded = webhook["namespaceSelector"]["matchExpressions"][-1]
        assert excluded["operator"] == "NotIn" and NAMESPACE in excluded["values"], "never the control plane's own"
    namespaced = by_name["namespace.inject.agentic-cp.dev"]
    assert namespaced["namespaceSelector"]["matchLabels"] == {"agentic-cp.dev/inject": "enabled"}
    assert namespaced["objectSelector"]["matchExpressions"][0]["values"] == ["false"]
    assert by_name["object.inject.agentic-cp.dev"]["objectSelector"]["matchLabels"] == {"agentic-cp.dev/inject": "true"}
    service = one(objects, "Service", f"{RELEASE}-webhook")
    assert service["spec"]["ports"][0]["targetPort"] == 15017
    as_model(service, "V1Service")


def test_on_the_control_plane_may_patch_that_configuration_only():
    role = one(render(ON), "ClusterRole", RELEASE)
    rules = [r for r in role["rules"] if "admissionregistration.k8s.io" in r["apiGroups"]]
    assert rules == [{"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                      "resourceNames": [f"{RELEASE}-sidecar-injector"], "verbs": ["get", "patch"]}]
    assert not [r for r in one(render(), "ClusterRole", RELEASE)["rules"]
                if "admissionregistration.k8s.io" in r["apiGroups"]]


def test_failure_policy_ignore_is_a_value():
    config = one(render({"injection": {"enabled": True, "failurePolicy": "Ignore"}}), "MutatingWebhookConfiguration")
    assert {w["failurePolicy"] for w in config["webhooks"]} == {"Ignore"}
