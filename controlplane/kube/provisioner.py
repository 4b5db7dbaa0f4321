"""Per-Gateway Envoy infrastructure: what to create for a Gateway of our class, and keeping it so.

Why here: a Gateway of our class needs a proxy to be reachable at all (upstream's `EnsureProxyExist`).
Rendering is pure (`render_gateway_infrastructure`, `render_credentials_secret`), so what the cluster
gets is testable without one; `GatewayProvisioner.reconcile` applies it with server-side apply (one
field manager, `agentic-cp`, forced: this controller owns these objects outright) and deletes the
objects it owns whose Gateway is gone or no longer of our class, all through the official client's
typed calls (`patch_namespaced_<kind>` with the apply-patch content type). Every object also carries an
ownerReference to its Gateway, so the cluster's garbage collector removes it even if this process
never sees the deletion.

Per Gateway `<gw>` in the Gateway's namespace:
- ServiceAccount `<gw>`: the proxy's identity, `spiffe://<td>/ns/<ns>/sa/<gw>` (xds_auth naming);
- ConfigMap `<gw>-envoy`: the Envoy bootstrap (`envoy.yaml`) and the two file-SDS documents;
- Secret `<gw>-envoy-xds`: the proxy's xDS client SVID (`cert.pem`, `key.pem`) and the trust bundle;
- Service `<gw>-envoy`: type LoadBalancer, one port per distinct listener port;
- Deployment `<gw>-envoy`: one Envoy replica.

How the proxy's credentials reach the pod (the choice, and why): the control plane, which holds the CA,
issues the SVID and writes it into the Secret above; the pod mounts ONE projected volume at
`/etc/envoy` that combines the ConfigMap (bootstrap + SDS files) and the Secret (PEMs). The kubelet
updates a projected volume by writing a new directory and swapping the `..data` symlink with a rename,
which is exactly the event Envoy's file-SDS `watched_directory` reacts to, so a renewed SVID is picked
up without a restart, and cert and key change together (no half-rotated pair). Upstream instead mounts
a `podCertificate` projected volume signed by its own signer; that needs Kubernetes >= 1.35 with
feature gates most clusters (and kind by default) do not have, and it would put a second CA in play.
Writing Secrets needs RBAC the chart must grant (secrets: get, list, create, patch, delete).

Readiness: Envoy's admin listens on 127.0.0.1 only (the admin API can stop the proxy), so the bootstrap
gets one more static listener, on `READY_PORT`, that forwards exactly `/ready` to the admin; the
kubelet probes that. Listener ports below 1024 (80, 443) are bindable by the non-root proxy through the
namespaced, "safe" sysctl `net.ipv4.ip_unprivileged_port_start=0`.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from controlplane.addresses import split_host_port
from controlplane.api.base import ResourceKey
from controlplane.api.gateway import Gateway
from controlplane.identity.files import BUNDLE_FILE, CERT_FILE, KEY_FILE
from controlplane.identity.xds_auth import (
    CONTROL_PLANE_SERVICE_ACCOUNT,
    GATEWAY_ROLE,
    control_plane_identity,
    node_id_for_gateway,
    proxy_identity_for_gateway,
)
from controlplane.kube.client import ApiError, KubeApi
from controlplane.kube.kinds import SERVICE, SERVICEACCOUNT, Kind
from controlplane.kube.typed import list_call, namespaced_call
from controlplane.translate.bootstrap import (
    BOOTSTRAP_FILE,
    BUNDLE_SDS_FILE,
    CERT_SDS_FILE,
    ENVOY_FLAGS,
    render_bootstrap,
    render_sds_files,
)

__all__ = [
    "ADMIN_PORT",
    "APPLY_PATCH",
    "FIELD_MANAGER",
    "MANAGED_BY",
    "READY_PORT",
    "GatewayInfrastructure",
    "GatewayProvisioner",
    "credentials_secret_name",
    "envoy_name",
    "render_bootstrap_files",
    "render_credentials_secret",
    "render_gateway_infrastructure",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "agentic-cp"
APPLY_PATCH = "application/apply-patch+yaml"
MANAGED_BY = "agentic-cp"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"  # GEP-1762
APP_NAME = "agentic-gateway"
CONFIG_DIR = "/etc/envoy"
ADMIN_PORT = 15000
READY_PORT = 15021
ENVOY_UID = 101  # the `envoy` user of the envoyproxy/envoy images

CONFIGMAP = Kind("ConfigMap", "", "v1", "configmaps", True)
SECRET = Kind("Secret", "", "v1", "secrets", True)
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", True)
# Creation order: identity and config first, the Service early (a load balancer takes a while), the
# Deployment last, when everything it mounts exists. Deletion goes the other way.
KINDS_IN_ORDER: tuple[Kind, ...] = (SERVICEACCOUNT, CONFIGMAP, SECRET, SERVICE, DEPLOYMENT)
_KIND_BY_NAME = {k.kind: k for k in KINDS_IN_ORDER}


def envoy_name(gateway_name: str) -> str:
    """Name of the Deployment, Service and ConfigMap of a Gateway's proxy."""
    return f"{gateway_name}-envoy"


def credentials_secret_name(gateway_name: str) -> str:
    return f"{gateway_name}-envoy-xds"


# --- rendering (pure) ------------------------------------------------------------------------------------


def _selector_labels(gateway: Gateway) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": gateway.name,
        GATEWAY_NAME_LABEL: gateway.name,
    }


def _labels(gateway: Gateway) -> dict[str, str]:
    infra = gateway.spec.infrastructure
    labels = dict(infra.labels) if infra else {}
    labels.update(_selector_labels(gateway))  # ours win: the selector and ownership must not be overridden
    labels.update({"app.kubernetes.io/component": "proxy", MANAGED_BY_LABEL: MANAGED_BY})
    return labels


def _annotations(gateway: Gateway) -> dict[str, str]:
    infra = gateway.spec.infrastructure
    return dict(infra.annotations) if infra else {}


def _owner_references(gateway: Gateway) -> list[dict[str, Any]]:
    if not gateway.metadata.uid:  # read from a directory: there is no object to own us
        return []
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "name": gateway.name,
            "uid": gateway.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(gateway: Gateway, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": gateway.namespace, "labels": _labels(gateway)}
    if annotations := _annotations(gateway):
        meta["annotations"] = annotations
    if owners := _owner_references(gateway):
        meta["ownerReferences"] = owners
    return meta


def _ready_listener(admin_port: int, ready_port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A static listener on READY_PORT forwarding only `/ready` to the loopback admin, and its cluster."""
    cluster = {
        "name": "envoy_admin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "envoy_admin",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": admin_port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    listener = {
        "name": "agentic-ready",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": ready_port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                            ".HttpConnectionManager",
                            "stat_prefix": "agentic_ready",
                            "route_config": {
                                "name": "agentic-ready",
                                "virtual_hosts": [
                                    {
                                        "name": "ready",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"path": "/ready"},
                                                "route": {"cluster": "envoy_admin"},
                                            },
                                            {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                                        ],
                                    }
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
    return listener, cluster


def render_bootstrap_files(
    gateway: Gateway,
    *,
    xds_address: str,
    trust_domain: str,
    namespace_of_control_plane: str,
    control_plane_service_account: str = CONTROL_PLANE_SERVICE_ACCOUNT,
    admin_port: int = ADMIN_PORT,
    ready_port: int = READY_PORT,
    config_dir: str = CONFIG_DIR,
) -> dict[str, str]:
    """The ConfigMap's data: `envoy.yaml` and the two file-SDS documents, all reading from `config_dir`."""
    host, port = split_host_port(xds_address)
    node_id = node_id_for_gateway(gateway.namespace, gateway.name)
    directory = Path(config_dir)
    bootstrap = render_bootstrap(
        node_id=node_id,
        node_cluster="gateway",
        xds_host=host,
        xds_port=port,
        admin_port=admin_port,
        credentials_dir=directory,
        trust_domain=trust_domain,
        control_plane_spiffe_id=control_plane_identity(
            trust_domain, namespace=namespace_of_control_plane, service_account=control_plane_service_account
        ),
    )
    listener, cluster = _ready_listener(admin_port, ready_port)
    bootstrap["static_resources"]["clusters"].append(cluster)
    bootstrap["static_resources"].setdefault("listeners", []).append(listener)
    files = {BOOTSTRAP_FILE: bootstrap, **render_sds_files(credentials_dir=directory)}
    return {name: yaml.safe_dump(content, sort_keys=False) for name, content in files.items()}


def render_gateway_infrastructure(
    gateway: Gateway,
    *,
    proxy_image: str,
    xds_address: str,
    trust_domain: str,
    namespace_of_control_plane: str,
    control_plane_service_account: str = CONTROL_PLANE_SERVICE_ACCOUNT,
    admin_port: int = ADMIN_PORT,
    ready_port: int = READY_PORT,
    config_dir: str = CONFIG_DIR,
    service_type: str = "LoadBalancer",
) -> list[dict[str, Any]]:
    """ServiceAccount, ConfigMap, Service and Deployment for one Gateway of our class (in apply order).

    The credentials Secret the Deployment mounts is rendered by `render_credentials_secret`, because
    it holds a private key issued at run time; rendering here stays deterministic.
    """
    name = envoy_name(gateway.name)
    files = render_bootstrap_files(
        gateway,
        xds_address=xds_address,
        trust_domain=trust_domain,
        namespace_of_control_plane=namespace_of_control_plane,
        control_plane_service_account=control_plane_service_account,
        admin_port=admin_port,
        ready_port=ready_port,
        config_dir=config_dir,
    )
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(gateway, gateway.name),
        "automountServiceAccountToken": False,
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(gateway, name),
        "data": files,
    }
    return [
        service_account,
        config_map,
        _service(gateway, name, service_type),
        _deployment(
            gateway, name, proxy_image=proxy_image, files=files, config_dir=config_dir, ready_port=ready_port
        ),
    ]


def _service(gateway: Gateway, name: str, service_type: str) -> dict[str, Any]:
    ports, seen = [], set()
    for listener in gateway.spec.listeners:
        if listener.port in seen:
            continue
        seen.add(listener.port)
        proto = listener.protocol.lower()
        port_name = (
            f"{proto}-{listener.port}" if proto.isalnum() and len(proto) <= 9 else f"port-{listener.port}"
        )
        ports.append(
            {
                "name": port_name,
                "port": listener.port,
                "targetPort": listener.port,
                "protocol": "UDP" if listener.protocol == "UDP" else "TCP",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(gateway, name),
        "spec": {"type": service_type, "selector": _selector_labels(gateway), "ports": ports},
    }


def _deployment(
    gateway: Gateway,
    name: str,
    *,
    proxy_image: str,
    files: Mapping[str, str],
    config_dir: str,
    ready_port: int,
) -> dict[str, Any]:
    pod_annotations = _annotations(gateway)
    # A changed bootstrap must restart the proxy (Envoy reads it once); SDS files and PEMs need no restart.
    pod_annotations["agentic-cp/bootstrap-hash"] = hashlib.sha256(files[BOOTSTRAP_FILE].encode()).hexdigest()[
        :16
    ]
    listener_ports = sorted({lst.port for lst in gateway.spec.listeners})
    container = {
        "name": "envoy",
        "image": proxy_image,
        "command": ["envoy"],
        "args": ["-c", f"{config_dir}/{BOOTSTRAP_FILE}", "--base-id", "0", *ENVOY_FLAGS],
        "ports": [
            {"name": f"listener-{p}"[:15], "containerPort": p, "protocol": "TCP"} for p in listener_ports
        ]
        + [{"name": "ready", "containerPort": ready_port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": ready_port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": ENVOY_UID,
            "runAsGroup": ENVOY_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "envoy-config", "mountPath": config_dir, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    config_items = [{"key": key, "path": key} for key in (BOOTSTRAP_FILE, CERT_SDS_FILE, BUNDLE_SDS_FILE)]
    secret_items = [{"key": key, "path": key} for key in (CERT_FILE, KEY_FILE, BUNDLE_FILE)]
    volumes = [
        {
            "name": "envoy-config",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"configMap": {"name": name, "items": config_items}},
                    {"secret": {"name": credentials_secret_name(gateway.name), "items": secret_items}},
                ],
            },
        },
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    pod_labels = _labels(gateway)
    template_meta: dict[str, Any] = {"labels": pod_labels, "annotations": pod_annotations}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(gateway, name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector_labels(gateway)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "serviceAccountName": gateway.name,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": ENVOY_UID,
                        "runAsGroup": ENVOY_UID,
                        "fsGroup": ENVOY_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def render_credentials_secret(
    gateway: Gateway, *, cert_chain_pem: bytes, key_pem: bytes, bundle_pem: bytes
) -> dict[str, Any]:
    """The Secret `<gw>-envoy-xds` holding the proxy's xDS client SVID and the trust bundle."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(gateway, credentials_secret_name(gateway.name)),
        "stringData": {
            CERT_FILE: cert_chain_pem.decode(),
            KEY_FILE: key_pem.decode(),
            BUNDLE_FILE: bundle_pem.decode(),
        },
    }


# --- reconciling ---------------------------------------------------------------------------------------


@dataclass
class GatewayInfrastructure:
    """What reconcile learned about one Gateway's proxy."""

    addresses: list[dict[str, str]] = field(default_factory=list)  # Gateway status.addresses entries
    ready: bool = False  # the Deployment has an available replica
    error: str | None = None  # why applying failed, if it did


class Issuer(Protocol):
    """What the provisioner needs from the identity side: a current SVID per SPIFFE ID, and the bundle.

    `controlplane.identity.rotation.CertificateManager` fits (`get`, `bundle_pem`).
    """

    bundle_pem: bytes

    def get(self, spiffe_id: str, *, xds_role: str | None = None) -> Any: ...


class GatewayProvisioner:
    """Keeps one Envoy proxy per Gateway of our class, through the Kubernetes API.

    Only the leader applies and deletes (when an `elector` is given); followers just read the
    Services to learn addresses. `reconcile` is idempotent and cheap when nothing changed: server-side
    apply of an unchanged object does not touch it (no new resourceVersion, no watch event).
    """

    def __init__(
        self,
        *,
        api: KubeApi,
        proxy_image: str,
        xds_address: str,
        trust_domain: str,
        namespace_of_control_plane: str,
        control_plane_service_account: str = CONTROL_PLANE_SERVICE_ACCOUNT,
        issuer: Issuer | None = None,
        elector: Any = None,
        cluster_ip_fallback: bool = True,
        service_type: str = "LoadBalancer",
        delete_secrets: bool = True,
    ):
        self._api = api
        self._render_args = {
            "proxy_image": proxy_image,
            "xds_address": xds_address,
            "trust_domain": trust_domain,
            "namespace_of_control_plane": namespace_of_control_plane,
            "control_plane_service_account": control_plane_service_account,
            "service_type": service_type,
        }
        self._trust_domain = trust_domain
        self._issuer = issuer
        self._elector = elector
        self._cluster_ip_fallback = cluster_ip_fallback
        self._delete_secrets = delete_secrets
        self._lock = asyncio.Lock()

    @property
    def _leading(self) -> bool:
        return self._elector is None or bool(self._elector.is_leader)

    def desired(self, gateway: Gateway) -> list[dict[str, Any]]:
        """Every object for `gateway`, the credentials Secret included when an issuer is configured."""
        objects = render_gateway_infrastructure(gateway, **self._render_args)
        if self._issuer is not None:
            identity = self._issuer.get(  # the proxy's xDS credential: its SVID with the gateway role
                proxy_identity_for_gateway(self._trust_domain, gateway.namespace, gateway.name),
                xds_role=GATEWAY_ROLE,
            )
            secret = render_credentials_secret(
                gateway,
                cert_chain_pem=identity.chain_pem,
                key_pem=identity.key_pem,
                bundle_pem=self._issuer.bundle_pem,
            )
            objects.insert(2, secret)
        return objects

    async def reconcile(self, gateways: Iterable[Gateway]) -> dict[ResourceKey, GatewayInfrastructure]:
        """Apply the objects of every Gateway given (all must be of our class); delete those of any other.

        Returns, per Gateway, its addresses (from the Service's load balancer, else its ClusterIP when
        `cluster_ip_fallback`) and whether its proxy is ready. One Gateway's failure does not stop the rest.
        """
        gateways = sorted(gateways, key=lambda g: g.key)
        async with self._lock:
            result: dict[ResourceKey, GatewayInfrastructure] = {}
            for gateway in gateways:
                result[gateway.key] = await self._ensure(gateway)
            if self._leading:
                await self._collect_garbage({(g.namespace, g.name) for g in gateways})
            return result

    async def _ensure(self, gateway: Gateway) -> GatewayInfrastructure:
        info = GatewayInfrastructure()
        if not self._leading:
            service = await self._get(SERVICE, gateway.namespace, envoy_name(gateway.name))
            info.addresses = self._addresses(service)
            return info
        try:
            for obj in self.desired(gateway):
                applied = await self.apply(obj)
                if obj["kind"] == "Service":
                    info.addresses = self._addresses(applied)
                elif obj["kind"] == "Deployment":
                    info.ready = int(((applied or {}).get("status") or {}).get("availableReplicas") or 0) > 0
        except (ApiError, OSError, TimeoutError) as error:
            log.warning("proxy of Gateway %s not provisioned: %r", gateway.key.ref, error)
            info.error = str(error)
        return info

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of one object (create or update), as field manager `agentic-cp`, forced."""
        kind = _KIND_BY_NAME[obj["kind"]]
        meta, body = obj["metadata"], copy.deepcopy(dict(obj))
        return await self._api.call(
            functools.partial(namespaced_call, kind=kind, verb="patch"), meta["name"], meta["namespace"], body,
            field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH,
        )

    async def _get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._api.call(functools.partial(namespaced_call, kind=kind, verb="read"), name, namespace)
        except ApiError as error:
            if error.status != 404:
                log.info("cannot read %s %s/%s: %r", kind.kind, namespace, name, error)
            return None
        except (OSError, TimeoutError) as error:
            log.info("cannot read %s %s/%s: %r", kind.kind, namespace, name, error)
            return None

    def _addresses(self, service: Mapping[str, Any] | None) -> list[dict[str, str]]:
        if not service:
            return []
        addresses = []
        for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip"):
                addresses.append({"type": "IPAddress", "value": ingress["ip"]})
            elif ingress.get("hostname"):
                addresses.append({"type": "Hostname", "value": ingress["hostname"]})
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        if not addresses and self._cluster_ip_fallback and cluster_ip and cluster_ip != "None":
            addresses.append({"type": "IPAddress", "value": cluster_ip})
        return addresses

    async def _collect_garbage(self, live: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """Delete objects we own (by label) whose Gateway is not in `live`; returns what was deleted."""
        deleted = []
        kinds = [k for k in reversed(KINDS_IN_ORDER) if k is not SECRET or self._delete_secrets]
        for kind in kinds:
            try:
                listing = await self._api.call(
                    functools.partial(list_call, kind=kind), label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}"
                )
            except (ApiError, OSError, TimeoutError) as error:
                # e.g. 403 on Secrets without the RBAC: ownerReferences still clean those up
                log.info("cannot list %s to clean up: %r", kind.resource, error)
                continue
            for item in listing.get("items") or []:
                meta = item.get("metadata") or {}
                owner = (meta.get("labels") or {}).get(GATEWAY_NAME_LABEL)
                if not owner or (meta.get("namespace"), owner) in live:
                    continue
                try:
                    await self._api.call(
                        functools.partial(namespaced_call, kind=kind, verb="delete"),
                        meta["name"], meta["namespace"], propagation_policy="Background",
                    )
                except ApiError as error:
                    if error.status != 404:
                        log.warning(
                            "cannot delete %s %s/%s: %r",
                            kind.kind,
                            meta.get("namespace"),
                            meta.get("name"),
                            error,
                        )
                        continue
                deleted.append((kind.kind, meta["namespace"], meta["name"]))
                log.info("deleted %s %s/%s: its Gateway is gone", kind.kind, meta["namespace"], meta["name"])
        return deleted
