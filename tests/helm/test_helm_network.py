"""Who can reach the control plane in the chart: the NetworkPolicy, and the admin token for /debug/*."""

from __future__ import annotations

import re

import pytest

from tests.helm.helm_support import NAMESPACE, find, helm_python, one, render


def _container(objects):
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _rule_for(policy: dict, port_name: str) -> dict:
    [rule] = [r for r in policy["spec"]["ingress"] if [p["port"] for p in r["ports"]] == [port_name]]
    return rule


def test_network_policy_opens_xds_to_the_mesh_and_admin_to_monitoring_only(default_objects):
    policy = one(default_objects, "NetworkPolicy")
    pod_labels = one(default_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == NAMESPACE
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    container_ports = {p["name"] for p in _container(default_objects)["ports"]}
    assert {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]} == container_ports
    assert _rule_for(policy, "grpc-xds")["from"] == [{"namespaceSelector": {}}]
    assert _rule_for(policy, "http-metrics")["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert len(policy["spec"]["ingress"]) == 2  # nothing else is let in


def test_network_policy_monitoring_namespace_and_switch():
    policy = one(render({"networkPolicy": {"monitoringNamespace": "prometheus"}}), "NetworkPolicy")
    assert _rule_for(policy, "http-metrics")["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "prometheus"}
    closed = one(render({"networkPolicy": {"monitoringNamespace": ""}}), "NetworkPolicy")
    assert [p["port"] for r in closed["spec"]["ingress"] for p in r["ports"]] == ["grpc-xds"]
    assert find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []


def test_network_policy_can_narrow_the_admin_port_to_the_scraper_pods(custom_objects):
    """Both selectors in one `from` entry: pods with these labels in that namespace (an AND)."""
    policy = one(custom_objects, "NetworkPolicy")
    assert _rule_for(policy, "http-metrics")["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }]
    assert _rule_for(policy, "grpc-xds")["from"] == [{"namespaceSelector": {}}]


def test_debug_views_are_loopback_only_without_a_token_secret(default_objects):
    args = _container(default_objects)["args"]
    assert "--admin-token-file" not in args
    assert args[args.index("--admin-address") + 1] == "0.0.0.0:15014"  # probes and Prometheus need it


def test_admin_token_secret_is_mounted_and_passed():
    objects = render({"admin": {"tokenSecret": "cp-admin-token"}, "logFormat": "json"})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    path = args[args.index("--admin-token-file") + 1]
    assert args[args.index("--log-format") + 1] == "json"
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "cp-admin-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": path.rsplit("/", 1)[1]}]


def test_rendered_flags_parse(default_objects):
    from controlplane.cli import _parser

    objects = render({"admin": {"tokenSecret": "t"}, "logFormat": "json"})
    args = _parser().parse_args(_container(objects)["args"])
    assert args.log_format == "json" and args.admin_token_file == "/etc/agentic-cp/admin-token/token"


@pytest.mark.parametrize("values, complaint", [
    ({"logFormat": "xml"}, "/logFormat"),
    ({"networkPolicy": {"monitoringNamespace": "Bad_NS"}}, "/networkPolicy/monitoringNamespace"),
    ({"admin": {"tokenSecret": "Not_A_Name"}}, "/admin/tokenSecret"),
    ({"provisioning": {"namespaces": ["Team_A"]}}, "/provisioning/namespaces/0"),
])
def test_bad_values_fail_the_render(values, complaint):
    with pytest.raises(helm_python.HelmError, match=re.escape(complaint)):
        render(values)
