"""Sidecar injection: a Pod (or a workload's pod template) in, the same object with the mesh added out.

Why pure: `agentic-cp inject -f` (offline, as `istioctl kube-inject`) and the admission webhook must
add exactly the same containers, so both call `inject_object`; neither this module nor its callers'
tests need a cluster. Nothing here reads or writes anything.

What an injected pod carries (Istio's shape, so runbooks carry over):
- init container `agentic-cp-bootstrap` (the control plane's image, non-root): writes the Envoy
  bootstrap into the emptyDir `agentic-cp-proxy-config` at start, from the pod's namespace and
  ServiceAccount (downward API), with `agentic-cp sidecar-bootstrap`; node id `sidecar~NS~SA`.
- init container `agentic-cp-capture` (root, NET_ADMIN/NET_RAW only): `agentic-cp capture-rules`
  piped to `iptables-restore`: the very rules `capture.py` emits, with the proxy UID 1337 excluded.
- container `agentic-cp-proxy` (Envoy, UID/GID 1337, read-only root): outbound 15001, inbound 15006,
  admin 15000 on loopback, readiness on 15021 (`/healthz/ready`, Envoy's `/ready`: LIVE only once its
  first xDS config arrived).
- the xDS credential: the Secret `<credentialsSecretPrefix><serviceAccount>` (cert.pem, key.pem,
  bundle.pem, as `agentic-cp bootstrap --workload` writes them), mounted read-only; and a projected
  ServiceAccount token with our audience, mounted for the token exchange (TokenReview) that will
  replace that Secret. Nothing reads the token yet.

Who is injected: `decide`. Objects that are not workloads, host-network pods, pods injected already
(idempotence: a second pass changes nothing) and pods that opt out are returned unchanged.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from typing import Any

from controlplane.translate.capture import CaptureSettings

__all__ = [
    "INJECT_LABEL",
    "InjectionError",
    "MeshSettings",
    "decide",
    "inject_object",
    "inject_pod_spec",
    "pod_template_of",
]

INJECT_LABEL = "agentic-cp.dev/inject"  # on a Namespace: enabled|disabled; on a Pod: "true"|"false"
STATUS_ANNOTATION = "agentic-cp.dev/status"  # "injected" once done
PROXY_CONTAINER, BOOTSTRAP_CONTAINER, CAPTURE_CONTAINER = "agentic-cp-proxy", "agentic-cp-bootstrap", "agentic-cp-capture"
CONFIG_VOLUME, CREDENTIALS_VOLUME, TOKEN_VOLUME = "agentic-cp-proxy-config", "agentic-cp-xds-credentials", "agentic-cp-token"
CONFIG_DIR, CREDENTIALS_DIR, TOKEN_DIR = "/etc/agentic-cp/proxy", "/etc/agentic-cp/credentials", "/var/run/secrets/agentic-cp"
TOKEN_FILE = "xds-token"
ADMIN_PORT, HEALTH_PORT = 15000, 15021
READY_PATH = "/healthz/ready"
MAX_NAME = 253  # a Secret name is a DNS subdomain
# kind -> the path of its pod template, for every built-in kind that makes pods.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class InjectionError(ValueError):
    """A workload that cannot be injected as written: one line saying which field and why."""


@dataclass(frozen=True)
class MeshSettings:
    """What every injected pod shares: where the control plane is, which images, which capture."""

    xds_address: str = "agentic-cp.agentic-system.svc:15010"
    trust_domain: str = "cluster.local"
    control_plane_id: str = ""  # the SPIFFE ID the sidecar pins; "" = the default for trust_domain
    proxy_image: str = "envoyproxy/envoy:v1.40.0"
    init_image: str = "agentic-cp:latest"  # the control plane's image: has `agentic-cp` and iptables
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    credentials_secret_prefix: str = "agentic-cp-xds-"
    token_audience: str = "agentic-cp"
    token_expiration_seconds: int = 3600
    proxy_resources: dict = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InjectionError(f"{where}: must be a mapping, not {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InjectionError(f"{where}: must be a list, not {type(value).__name__}")
    return value


def pod_template_of(obj: dict) -> tuple[dict, str] | None:
    """The object's pod (itself for a Pod, else its template) and that pod's field path; None if it
    makes no pods."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj, ""
    path = TEMPLATE_PATHS.get(kind) if isinstance(kind, str) else None
    if path is None:
        return None
    node = obj
    for depth, key in enumerate(path):
        node = _mapping(node.get(key), ".".join(path[: depth + 1]))
        if not node and depth < len(path) - 1:
            raise InjectionError(f"{'.'.join(path[: depth + 1])}: missing")
    if not node:
        raise InjectionError(f"{'.'.join(path)}: missing")
    return node, ".".join(path) + "."


def _opt(value: Any) -> bool | None:
    """A pod's label or annotation: True, False, or None (not said)."""
    text = str(value).strip().lower() if value is not None else ""
    return {"true": True, "enabled": True, "false": False, "disabled": False}.get(text)


def decide(pod: dict, *, namespace_label: str | None) -> tuple[bool, str]:
    """Whether to inject, and why (for logs and `inject`'s stderr). As Istio: the pod's label (then its
    annotation) wins over the namespace's label, except that a `disabled` namespace is never injected;
    `namespace_label=None` means the namespace is not known (offline: inject unless the pod opts out)."""
    meta = _mapping(pod.get("metadata"), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    if spec.get("hostNetwork") is True:
        return False, "hostNetwork pod: its iptables are the node's"
    if _already_injected(meta, spec):
        return False, "already injected"
    if (namespace_label or "").lower() == "disabled":
        return False, f"namespace {INJECT_LABEL}=disabled"
    said = _opt(_mapping(meta.get("labels"), "metadata.labels").get(INJECT_LABEL))
    if said is None:
        said = _opt(_mapping(meta.get("annotations"), "metadata.annotations").get(INJECT_LABEL))
    if said is not None:
        return said, f"pod {INJECT_LABEL}={'true' if said else 'false'}"
    if namespace_label is None:
        return True, "no opt-out"
    enabled = namespace_label.lower() == "enabled"
    return enabled, f"namespace {INJECT_LABEL}={namespace_label}" if enabled else f"namespace lacks {INJECT_LABEL}=enabled"


def _already_injected(meta: dict, spec: dict) -> bool:
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    names = {c.get("name") for c in _list(spec.get("containers"), "spec.containers") if isinstance(c, dict)}
    return annotations.get(STATUS_ANNOTATION) == "injected" or PROXY_CONTAINER in names


def service_account_of(spec: dict) -> str:
    """The pod's ServiceAccount as the apiserver defaults it."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if not isinstance(name, str):
        raise InjectionError("spec.serviceAccountName: must be a string")
    return name


def _downward_env() -> list[dict]:
    return [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]


def capture_flags(capture: CaptureSettings) -> list[str]:
    """`agentic-cp capture-rules` flags that reproduce `capture` exactly."""
    def joined(items) -> str:
        return ",".join(str(i) for i in items)
    return ["--proxy-uid", str(capture.proxy_uid), "--proxy-gid", str(capture.proxy_gid),
            "--inbound-ports", joined(capture.inbound_ports),
            "--exclude-inbound-ports", joined(capture.excluded_inbound_ports),
            "--outbound-ip-ranges", joined(capture.outbound_cidrs),
            "--exclude-outbound-ip-ranges", joined(capture.excluded_outbound_cidrs),
            "--exclude-outbound-ports", joined(capture.excluded_outbound_ports)]


def _capture_container(mesh: MeshSettings) -> dict:
    rules = shlex.join(["agentic-cp", "capture-rules", *capture_flags(mesh.capture)])
    return {
        "name": CAPTURE_CONTAINER,
        "image": mesh.init_image,
        # No pipefail in POSIX sh: the rules are made first, so a failure there fails the container.
        # Backquotes, not $(...): Kubernetes would read $(NAME) in a command as a variable reference.
        "command": ["sh", "-c", f'rules=`{rules}` && printf "%s\\n" "$rules" | iptables-restore'],
        # iptables takes its lock in /run/xtables.lock: the root filesystem must stay writable here.
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }


def _bootstrap_container(mesh: MeshSettings) -> dict:
    args = ["sidecar-bootstrap", "--workload", "$(POD_NAMESPACE)/$(POD_SERVICE_ACCOUNT)",
            "--xds-address", mesh.xds_address, "--trust-domain", mesh.trust_domain,
            "--credentials-dir", CREDENTIALS_DIR, "--out", CONFIG_DIR,
            "--admin-port", str(ADMIN_PORT), "--health-port", str(HEALTH_PORT)]
    if mesh.control_plane_id:
        args += ["--control-plane-id", mesh.control_plane_id]
    return {
        "name": BOOTSTRAP_CONTAINER,
        "image": mesh.init_image,
        "command": ["agentic-cp"],
        "args": args,
        "env": _downward_env(),
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR}],
        "securityContext": _proxy_security(),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


def _proxy_security() -> dict:
    return {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _proxy_container(mesh: MeshSettings) -> dict:
    security = _proxy_security() | {"runAsUser": mesh.capture.proxy_uid, "runAsGroup": mesh.capture.proxy_gid}
    return {
        "name": PROXY_CONTAINER,
        "image": mesh.proxy_image,
        "command": ["envoy"],
        "args": ["-c", f"{CONFIG_DIR}/envoy.yaml", "--file-flush-interval-msec", "1000", "--log-level", "warning"],
        "env": _downward_env(),
        "ports": [{"name": "mesh-inbound", "containerPort": mesh.capture.inbound_port, "protocol": "TCP"},
                  {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": HEALTH_PORT},
                           "initialDelaySeconds": 1, "periodSeconds": 2, "failureThreshold": 30},
        "resources": copy.deepcopy(mesh.proxy_resources),
        "securityContext": security,
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True},
                         {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}],
    }


def credentials_secret(mesh: MeshSettings, service_account: str) -> str:
    name = mesh.credentials_secret_prefix + service_account
    if len(name) > MAX_NAME:
        raise InjectionError(f"spec.serviceAccountName: {len(service_account)} characters; the credentials Secret "
                             f"{mesh.credentials_secret_prefix}<name> would exceed {MAX_NAME}")
    return name


def _volumes(mesh: MeshSettings, service_account: str) -> list[dict]:
    return [
        {"name": CONFIG_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": CREDENTIALS_VOLUME, "secret": {"secretName": credentials_secret(mesh, service_account),
                                                "defaultMode": 0o440}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": mesh.token_audience, "expirationSeconds": mesh.token_expiration_seconds,
            "path": TOKEN_FILE}}]}},
    ]


def _check_names(spec: dict, field_path: str, *, taken: tuple[str, ...]) -> list[dict]:
    items = _list(spec.get(field_path), f"spec.{field_path}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InjectionError(f"spec.{field_path}[{index}]: must be a mapping")
        if item.get("name") in taken:
            raise InjectionError(f"spec.{field_path}[{index}].name: {item['name']!r} is reserved for the sidecar")
    return items


def inject_pod_spec(pod: dict, mesh: MeshSettings) -> dict:
    """A copy of `pod` (a Pod or a pod template: `metadata` and `spec`) with the sidecar added."""
    spec = _mapping(pod.get("spec"), "spec")
    if not spec:
        raise InjectionError("spec: missing")
    containers = _check_names(spec, "containers", taken=(PROXY_CONTAINER,))
    if not containers:
        raise InjectionError("spec.containers: a pod needs at least one container")
    inits = _check_names(spec, "initContainers", taken=(BOOTSTRAP_CONTAINER, CAPTURE_CONTAINER))
    volumes = _check_names(spec, "volumes", taken=(CONFIG_VOLUME, CREDENTIALS_VOLUME, TOKEN_VOLUME))
    service_account = service_account_of(spec)
    annotations = _mapping(_mapping(pod.get("metadata"), "metadata").get("annotations"), "metadata.annotations")
    out = copy.deepcopy(pod)
    # Ours first, as Istio's istio-init: the app's own init containers then run captured already (and,
    # the proxy not running yet, without the network: native sidecars would lift that; not built).
    out["spec"]["initContainers"] = [_bootstrap_container(mesh), _capture_container(mesh), *copy.deepcopy(inits)]
    out["spec"]["containers"] = [*copy.deepcopy(containers), _proxy_container(mesh)]
    out["spec"]["volumes"] = [*copy.deepcopy(volumes), *_volumes(mesh, service_account)]
    out["metadata"] = out.get("metadata") or {}
    out["metadata"]["annotations"] = {**annotations, STATUS_ANNOTATION: "injected"}
    return out


def inject_object(obj: Any, mesh: MeshSettings, *, namespace_label: str | None = None) -> tuple[Any, str]:
    """`obj` injected (or unchanged), and why. Raises `InjectionError` for a workload that is malformed."""
    if not isinstance(obj, dict):
        return obj, "not an object"
    found = pod_template_of(obj)
    if found is None:
        return obj, f"{obj.get('kind')!s:.60} makes no pods"
    pod, path = found
    try:
        inject, why = decide(pod, namespace_label=namespace_label)
        if not inject:
            return obj, why
        injected = inject_pod_spec(pod, mesh)
    except InjectionError as err:
        raise InjectionError(f"{path}{err}") from None
    if not path:
        return injected, why
    out = copy.deepcopy(obj)
    node = out
    keys = TEMPLATE_PATHS[obj["kind"]]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = injected
    return out, why
