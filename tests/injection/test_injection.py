"""The injection as a pure function: every workload kind, opt-in/out, idempotence, hostile objects."""

from __future__ import annotations

import copy
import shlex

import pytest

from controlplane.cli import main
from controlplane.translate import capture
from controlplane.translate.injection import (
    INJECT_LABEL,
    PROXY_CONTAINER,
    InjectionError,
    MeshSettings,
    capture_flags,
    decide,
    inject_object,
    pod_template_of,
)
from tests.injection.pods import as_model, pod, workload

MESH = MeshSettings()
KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
MODELS = {"Deployment": "V1Deployment", "StatefulSet": "V1StatefulSet", "DaemonSet": "V1DaemonSet",
          "ReplicaSet": "V1ReplicaSet", "Job": "V1Job", "CronJob": "V1CronJob"}


def containers(pod_spec: dict, key: str = "containers") -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec.get(key, [])}


def test_a_pod_gets_the_proxy_the_init_containers_and_the_volumes():
    out, why = inject_object(pod(), MESH)
    spec = out["spec"]
    proxy = containers(spec)[PROXY_CONTAINER]
    assert list(containers(spec)) == ["app", PROXY_CONTAINER], "the app stays first"
    assert proxy["securityContext"]["runAsUser"] == 1337 and proxy["securityContext"]["runAsGroup"] == 1337
    assert {p["containerPort"] for p in proxy["ports"]} == {15006, 15021}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert proxy["resources"]["requests"]
    assert [c["name"] for c in spec["initContainers"]] == ["agentic-cp-bootstrap", "agentic-cp-capture"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["agentic-cp-xds-credentials"]["secret"]["secretName"] == "agentic-cp-xds-weather-server"
    token = volumes["agentic-cp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "agentic-cp" and token["expirationSeconds"] == 3600
    assert out["metadata"]["annotations"]["agentic-cp.dev/status"] == "injected"
    assert why == "no opt-out"


def test_the_bootstrap_is_made_at_start_from_the_pods_namespace_and_service_account():
    init = containers(inject_object(pod(), MESH)[0]["spec"], "initContainers")["agentic-cp-bootstrap"]
    args = init["args"]
    assert args[:3] == ["sidecar-bootstrap", "--workload", "$(POD_NAMESPACE)/$(POD_SERVICE_ACCOUNT)"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in init["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_SERVICE_ACCOUNT": "spec.serviceAccountName"}
    assert args[args.index("--xds-address") + 1] == MESH.xds_address


def test_the_capture_container_applies_exactly_the_rules_capture_rules_prints(capsys):
    settings = capture.CaptureSettings(excluded_outbound_ports=(5432,), excluded_outbound_cidrs=("10.0.0.1/32",))
    out, _ = inject_object(pod(), MeshSettings(capture=settings))
    init = containers(out["spec"], "initContainers")["agentic-cp-capture"]
    script = init["command"][2]
    assert "$(" not in script, "Kubernetes would expand $(...) in a command"
    inner = script.split("`")[1]
    command = shlex.split(inner)
    assert command[:2] == ["agentic-cp", "capture-rules"]
    assert main(command[1:]) == 0  # the command the init container runs, run here
    assert capsys.readouterr().out == capture.restore_script(settings)
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert script.endswith("| iptables-restore")
    assert capture_flags(settings)[:2] == ["--proxy-uid", "1337"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_workload_kind_has_its_pod_template_injected_and_parses_as_its_model(kind):
    obj = workload(kind)
    out, _ = inject_object(obj, MESH)
    template, _ = pod_template_of(out)
    assert PROXY_CONTAINER in containers(template["spec"])
    assert out["metadata"] == obj["metadata"], "only the template changes"
    _, round_trip = as_model(out, MODELS[kind])
    assert round_trip == out, "a field the official model does not know"


def test_the_injected_pod_parses_as_a_v1pod_losing_nothing():
    out, _ = inject_object(pod(), MESH)
    model, round_trip = as_model(out, "V1Pod")
    assert round_trip == out
    assert model.spec.containers[1].security_context.run_as_user == 1337


def test_injection_is_idempotent():
    once, _ = inject_object(pod(), MESH)
    twice, why = inject_object(once, MESH)
    assert twice == once and why == "already injected"


def test_a_pod_with_a_proxy_container_already_is_untouched():
    obj = pod(containers=[{"name": "app", "image": "a"}, {"name": PROXY_CONTAINER, "image": "b"}])
    assert inject_object(obj, MESH) == (obj, "already injected")


@pytest.mark.parametrize("labels, annotations, namespace, expected", [
    ({INJECT_LABEL: "false"}, {}, None, False),
    ({}, {INJECT_LABEL: "false"}, None, False),
    ({}, {}, "enabled", True),
    ({}, {}, "", False),
    ({INJECT_LABEL: "true"}, {}, "", True),
    ({INJECT_LABEL: "false"}, {}, "enabled", False),
    ({INJECT_LABEL: "true"}, {}, "disabled", False),
    ({INJECT_LABEL: "false"}, {INJECT_LABEL: "true"}, "enabled", False),  # the label wins
])
def test_opt_in_and_out_as_istio(labels, annotations, namespace, expected):
    obj = pod()
    obj["metadata"].update(labels=labels, annotations=annotations)
    inject, why = decide(obj, namespace_label=namespace)
    assert inject is expected, why
    out, _ = inject_object(obj, MESH, namespace_label=namespace)
    assert (out is not obj) is expected


def test_host_network_pods_are_skipped():
    obj = pod(hostNetwork=True)
    assert inject_object(obj, MESH) == (obj, "hostNetwork pod: its iptables are the node's")


def test_objects_that_make_no_pods_pass_through():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    assert inject_object(service, MESH)[0] is service
    assert inject_object(["a list"], MESH)[0] == ["a list"]
    assert inject_object({"kind": ["x"]}, MESH)[0] == {"kind": ["x"]}


def test_the_default_service_account_is_used_when_none_is_named():
    obj = pod()
    del obj["spec"]["serviceAccountName"]
    volumes = {v["name"]: v for v in inject_object(obj, MESH)[0]["spec"]["volumes"]}
    assert volumes["agentic-cp-xds-credentials"]["secret"]["secretName"] == "agentic-cp-xds-default"


@pytest.mark.parametrize("mangle, message", [
    (lambda o: o.pop("spec"), "spec: missing"),
    (lambda o: o.update(spec="text"), "spec: must be a mapping"),
    (lambda o: o["spec"].update(containers={"name": "app"}), "spec.containers: must be a list"),
    (lambda o: o["spec"].update(containers=[]), "at least one container"),
    (lambda o: o["spec"].update(containers=["app"]), "spec.containers[0]: must be a mapping"),
    (lambda o: o["spec"].update(initContainers="x"), "spec.initContainers: must be a list"),
    (lambda o: o["spec"].update(volumes=[{"name": "agentic-cp-token"}]), "reserved for the sidecar"),
    (lambda o: o["spec"].update(serviceAccountName="s" * 300), "would exceed 253"),
    (lambda o: o["spec"].update(serviceAccountName=["x"]), "must be a string"),
    (lambda o: o.update(metadata="x"), "metadata: must be a mapping"),
    (lambda o: o["metadata"].update(annotations=["x"]), "metadata.annotations: must be a mapping"),
])
def test_hostile_pods_are_one_line_errors(mangle, message):
    obj = pod()
    mangle(obj)
    before = copy.deepcopy(obj)
    with pytest.raises(InjectionError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        inject_object(obj, MESH)
    assert "\n" not in str(err.value)
    assert obj == before, "the input is never mutated"


@pytest.mark.parametrize("mangle, message", [
    (lambda o: o.pop("spec"), "spec: missing"),
    (lambda o: o["spec"].pop("template"), "spec.template: missing"),
    (lambda o: o["spec"].update(template=[1]), "spec.template: must be a mapping"),
    (lambda o: o["spec"]["template"]["spec"].update(containers="app"), "spec.template.spec.containers: must be a list"),
])
def test_hostile_templates_name_the_full_field_path(mangle, message):
    obj = workload("Deployment")
    mangle(obj)
    with pytest.raises(InjectionError, match=message):
        inject_object(obj, MESH)
