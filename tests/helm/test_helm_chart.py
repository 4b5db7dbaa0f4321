"""The chart, rendered by real Helm: lint, Kubernetes types, the control-plane pod, RBAC, values."""

from __future__ import annotations

import re

import kubernetes
import pytest

from tests.helm.helm_support import (
    CHART_DIR,
    CUSTOM_VALUES,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    find,
    helm_python,
    one,
    render,
    render_notes,
)

# apiVersion/kind -> model class of the official client.
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
}
# Kinds the official client has no model for: each is checked field by field in its own test.
WITHOUT_MODEL = {("gateway.networking.k8s.io/v1", "GatewayClass"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "GatewayClass", "CustomResourceDefinition"}
STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "helm.sh/chart")

API_CLIENT = kubernetes.client.ApiClient()


def _diff(expected, actual, path="") -> list[str]:
    """Where `actual` (a model round trip) differs from `expected` (the rendered YAML)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in expected.keys() | actual.keys():
            if key not in actual:
                out.append(f"{path}.{key}: dropped (unknown to the model?)")
            elif key not in expected:
                out.append(f"{path}.{key}: added by the model")
            else:
                out += _diff(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _diff(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: {expected!r} became {actual!r}"]


def _container(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# --- lint and render --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_lint_reports_no_errors_or_warnings(values):
    report = helm_python.lint(CHART_DIR, values, namespace=NAMESPACE, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_render_holds_the_expected_objects(default_objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted([
        ("ClusterRole", RELEASE), ("ClusterRoleBinding", RELEASE), ("Deployment", RELEASE),
        ("ClusterRole", f"{RELEASE}-provisioner"), ("ClusterRoleBinding", f"{RELEASE}-provisioner"),
        ("Role", f"{RELEASE}-proxy-credentials"), ("RoleBinding", f"{RELEASE}-proxy-credentials"),
        ("GatewayClass", "kube-agentic-networking"), ("PodDisruptionBudget", RELEASE), ("NetworkPolicy", RELEASE),
        ("Role", f"{RELEASE}-leader-election"), ("RoleBinding", f"{RELEASE}-leader-election"),
        ("Role", f"{RELEASE}-ca"), ("RoleBinding", f"{RELEASE}-ca"),
        ("Service", f"{RELEASE}-admin"), ("Service", f"{RELEASE}-xds"), ("ServiceAccount", RELEASE),
        ("CustomResourceDefinition", "ratelimitpolicies.governance.agentic-cp.dev"),
        ("CustomResourceDefinition", "guardrailpolicies.governance.agentic-cp.dev"),
        ("CustomResourceDefinition", "xaccesspolicies.agentic.networking.x-k8s.io"),
        ("CustomResourceDefinition", "xbackends.agentic.networking.x-k8s.io"),
    ])


@pytest.mark.parametrize("which", ["default_objects", "custom_objects"])
def test_every_object_is_the_kubernetes_type_it_claims(which, request):
    for obj in request.getfixturevalue(which):
        key = (obj["apiVersion"], obj["kind"])
        if key in WITHOUT_MODEL:
            continue
        assert key in MODELS, f"unexpected object type {key}"
        model = API_CLIENT._ApiClient__deserialize(obj, MODELS[key])
        assert isinstance(model, getattr(kubernetes.client, MODELS[key]))
        # The client ignores unknown keys when deserializing; a round trip shows any it dropped.
        assert _diff(obj, API_CLIENT.sanitize_for_serialization(model)) == [], f"{key} {obj['metadata']['name']}"


@pytest.mark.parametrize("which", ["default_objects", "custom_objects"])
def test_labels_and_namespaces(which, request):
    for obj in request.getfixturevalue(which):
        labels = obj["metadata"]["labels"]
        assert all(labels.get(k) for k in STANDARD_LABELS), f"{obj['kind']} labels {labels}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "agentic-cp-0.1.0"
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE


# --- the control-plane pod ----------------------------------------------------------------------------


def test_deployment_runs_serve_in_cluster_with_the_contract_flags(default_objects):
    deployment = one(default_objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = _container(default_objects)
    assert container["image"] == "agentic-cp:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == [
        "serve", "--in-cluster",
        "--xds-address", "0.0.0.0:15010", "--admin-address", "0.0.0.0:15014",
        "--state-dir", "/var/run/agentic-cp", "--trust-domain", "cluster.local", "--log-level", "info",
        "--log-format", "text",
        "--proxy-image", "envoyproxy/envoy:v1.40.0", "--ca-secret", f"{RELEASE}-ca",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert env["AGENTIC_CP_XDS_SERVICE"]["value"] == f"{RELEASE}-xds.{NAMESPACE}.svc:15010"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def test_probes_hit_the_admin_port(default_objects):
    container = _container(default_objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc-xds": 15010, "http-metrics": 15014}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert _arg(container["args"], "--admin-address").endswith(f":{ports['http-metrics']}")
    assert _arg(container["args"], "--xds-address").endswith(f":{ports['grpc-xds']}")


def test_pod_is_locked_down(default_objects):
    pod = one(default_objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # With a read-only root, the state dir must be a volume.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[_arg(container["args"], "--state-dir")]]
    assert pod["serviceAccountName"] == RELEASE


def test_services_select_the_pod_and_name_its_ports(default_objects):
    pod_template = one(default_objects, "Deployment")["spec"]["template"]
    container_ports = {p["name"] for p in pod_template["spec"]["containers"][0]["ports"]}
    expected = {f"{RELEASE}-xds": ("grpc", 15010), f"{RELEASE}-admin": ("http-metrics", 15014)}
    for name, (port_name, port) in expected.items():
        service = one(default_objects, "Service", name)
        selector = service["spec"]["selector"]
        assert selector.items() <= pod_template["metadata"]["labels"].items()
        [service_port] = service["spec"]["ports"]
        assert (service_port["name"], service_port["port"]) == (port_name, port)
        assert service_port["targetPort"] in container_ports
    deployment = one(default_objects, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_template["metadata"]["labels"].items()


def test_custom_values_reach_the_pod(custom_objects):
    deployment = one(custom_objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert container["image"] == "registry.example.org/agentic-cp:1.2.3"
    assert _arg(container["args"], "--trust-domain") == "mesh.example.org"
    assert _arg(container["args"], "--log-level") == "debug"
    assert container["resources"] == CUSTOM_VALUES["resources"]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == CUSTOM_VALUES["tolerations"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3"
    assert find(custom_objects, "GatewayClass") == []
    assert one(custom_objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1  # minReplicas 3 > 1


def test_single_replica_gets_no_disruption_budget():
    assert find(render({"replicas": 1}), "PodDisruptionBudget") == []


def test_gatewayclass_claims_the_upstream_controller_name(default_objects):
    gatewayclass = one(default_objects, "GatewayClass")
    assert gatewayclass["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gatewayclass["metadata"]["name"] == "kube-agentic-networking"
    assert set(gatewayclass) == {"apiVersion", "kind", "metadata", "spec"}
    spec = gatewayclass["spec"]
    assert set(spec) <= {"controllerName", "description", "parametersRef"}
    assert spec["controllerName"] == "sigs.k8s.io/kube-agentic-networking-controller"
    # Gateway API's own limits for these fields.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+",
                        spec["controllerName"]) and len(spec["controllerName"]) <= 253
    assert len(spec.get("description", "")) <= 64
    env = {e["name"]: e.get("value") for e in _container(default_objects)["env"]}
    assert env["AGENTIC_CP_GATEWAY_CLASS_CONTROLLER"] == spec["controllerName"]


# --- RBAC -------------------------------------------------------------------------------------------------


def _grants(role: dict) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_read_cluster_role_grants_reads_and_status_patches_only(default_objects):
    """What the code needs is checked call by call in test_helm_rbac.py; here, the shape."""
    role = one(default_objects, "ClusterRole", RELEASE)
    for rule in role["rules"]:
        statuses = all(r.endswith("/status") for r in rule["resources"])
        assert rule["verbs"] == (["patch"] if statuses else ["get", "list", "watch"]), rule
        assert "secrets" not in rule["resources"]
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule for rule in role["rules"])


def test_bindings_and_leader_election_role(default_objects):
    subject = {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    cluster_binding = one(default_objects, "ClusterRoleBinding", RELEASE)
    assert cluster_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                          "name": RELEASE}
    assert cluster_binding["subjects"] == [subject]
    role = one(default_objects, "Role", f"{RELEASE}-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _grants(role) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    binding = one(default_objects, "RoleBinding", f"{RELEASE}-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [subject]
    assert one(default_objects, "ServiceAccount")["metadata"]["name"] == RELEASE


def test_ca_secret_role_reads_only_the_ca_and_may_create_it(default_objects):
    """The shared CA: `get` on exactly the Secret passed as --ca-secret, `create` (which RBAC cannot
    limit by name) for the first replica, both in the release namespace only."""
    role = one(default_objects, "Role", f"{RELEASE}-ca")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _grants(role) == {("", "secrets", "get"), ("", "secrets", "create")}
    [get] = [rule for rule in role["rules"] if rule["verbs"] == ["get"]]
    assert get["resourceNames"] == [_arg(_container(default_objects)["args"], "--ca-secret")]
    binding = one(default_objects, "RoleBinding", f"{RELEASE}-ca")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{RELEASE}-ca"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_ca_secret_name_can_be_chosen():
    objects = render({"caSecret": "mesh-root"})
    assert _arg(_container(objects)["args"], "--ca-secret") == "mesh-root"
    [get] = [r for r in one(objects, "Role", f"{RELEASE}-ca")["rules"] if r["verbs"] == ["get"]]
    assert get["resourceNames"] == ["mesh-root"]


def test_pod_env_and_args_parse_as_serve_and_give_the_pinned_identity(default_objects, monkeypatch):
    """The rendered args are accepted by the real CLI parser, and with the env the downward API would
    give (POD_NAMESPACE, POD_SERVICE_ACCOUNT), the control plane's SPIFFE ID is the one provisioned
    proxies pin: spiffe://<td>/ns/<release namespace>/sa/<the pod's ServiceAccount>."""
    from controlplane.cli import _control_plane_account, _parser
    from controlplane.identity.xds_auth import control_plane_identity

    pod = one(default_objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    downward = {"metadata.namespace": NAMESPACE, "spec.serviceAccountName": pod["serviceAccountName"],
                "metadata.name": f"{RELEASE}-abc12"}
    for name, field_path in fields.items():
        monkeypatch.setenv(name, downward[field_path])
    args = _parser().parse_args(container["args"])
    assert args.in_cluster and args.ca_secret == f"{RELEASE}-ca" and args.proxy_image
    assert args.namespace is None and args.service_account is None  # taken from the env
    namespace, service_account = _control_plane_account(args)
    assert (namespace, service_account) == (NAMESPACE, RELEASE)
    assert control_plane_identity(_arg(container["args"], "--trust-domain"), namespace=namespace,
                                  service_account=service_account) == \
        f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{RELEASE}"


def test_otel_collector_value_becomes_the_serve_flag_and_is_off_by_default(default_objects):
    from controlplane.cli import _otel_collector, _parser

    def args(objects):
        return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]

    assert "--otel-collector" not in args(default_objects)
    parsed = _parser().parse_args(args(render({"otel": {"collector": "otel.observability.svc:4317"}})))
    assert str(_otel_collector(parsed.otel_collector)) == "otel.observability.svc:4317"


# --- values validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values, complaint", [
    ({"logLevel": "loud"}, "/logLevel"),
    ({"replicas": "three"}, "/replicas"),
    ({"caSecret": "Not_A_Name"}, "/caSecret"),
    ({"otel": {"collector": "http://collector:4317/"}}, "/otel/collector"),
    ({"otel": {"collector": "collector"}}, "/otel/collector"),
    ({"otel": {"endpoint": "collector:4317"}}, "/otel"),
])
def test_bad_values_fail_the_render(values, complaint):
    with pytest.raises(helm_python.HelmError, match=re.escape(complaint)):
        render(values)


def test_notes_say_gateway_api_crds_are_not_included():
    notes = render_notes()
    assert "does NOT install the Gateway API CRDs" in notes
    assert f"{RELEASE}-xds.{NAMESPACE}.svc:15010" in notes


# --- image ---------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_that_matches_the_pod(default_objects):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert re.search(r"\bpip install \.", dockerfile)
    [user] = [line.split()[1] for line in instructions if line.startswith("USER ")]
    uid = int(user.split(":")[0])
    pod_security = one(default_objects, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert uid != 0 and uid == pod_security["runAsUser"]
    assert 'ENTRYPOINT ["agentic-cp"]' in instructions
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", ".pytest_cache"} <= ignored
