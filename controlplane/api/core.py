"""Core and discovery kinds, so that a directory can describe a whole cluster:
Namespace, Service, ServiceAccount, Pod (v1) and EndpointSlice (discovery.k8s.io/v1).

A workload (a ServiceAccount's pods, what a sidecar serves) is found as Kubernetes itself records it:
an EndpointSlice endpoint's `targetRef` names its Pod, and the Pod's `spec.serviceAccountName` its
ServiceAccount (Kubernetes' default, `default`, when unset). So a cluster source watches the same kinds."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from controlplane.api.base import LenientModel, Resource


class Namespace(Resource):
    KIND: ClassVar[str] = "Namespace"
    NAMESPACED: ClassVar[bool] = False


class ServiceAccount(Resource):
    KIND: ClassVar[str] = "ServiceAccount"


class PodSpec(LenientModel):
    service_account_name: str = Field(default="default", alias="serviceAccountName", min_length=1)


class Pod(Resource):
    KIND: ClassVar[str] = "Pod"
    spec: PodSpec = Field(default_factory=PodSpec)


class ServicePort(LenientModel):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = Field(default=None, alias="targetPort")
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = Field(default=None, alias="appProtocol")


class ServiceSpec(LenientModel):
    ports: list[ServicePort] = Field(default_factory=list)
    type: str = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    external_name: str | None = Field(default=None, alias="externalName")


class Service(Resource):
    KIND: ClassVar[str] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.spec.ports if p.port == number), None)


class EndpointConditions(LenientModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ObjectReference(LenientModel):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class Endpoint(LenientModel):
    addresses: list[str] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    zone: str | None = None
    target_ref: ObjectReference | None = Field(default=None, alias="targetRef")

    def pod(self, slice_namespace: str) -> tuple[str, str] | None:
        """(namespace, name) of the Pod behind this endpoint, if its targetRef names one."""
        ref = self.target_ref
        if ref is None or ref.kind != "Pod" or not ref.name:
            return None
        return ref.namespace or slice_namespace, ref.name

    @property
    def is_ready(self) -> bool:
        # Kubernetes: a nil `ready` means ready.
        return self.conditions.ready is not False


class EndpointPort(LenientModel):
    name: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: str = "TCP"


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class EndpointSlice(Resource):
    API_GROUP: ClassVar[str] = "discovery.k8s.io"
    KIND: ClassVar[str] = "EndpointSlice"
    address_type: Literal["IPv4", "IPv6", "FQDN"] = Field(alias="addressType")
    endpoints: list[Endpoint] = Field(default_factory=list)
    ports: list[EndpointPort] | None = None

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)


class ConfigMap(Resource):
    """Read for one reason: a CA bundle an egress XBackend names (`ca.crt`, api/egress.py)."""

    KIND: ClassVar[str] = "ConfigMap"
    data: dict[str, str] = Field(default_factory=dict)


class Secret(Resource):
    """Read for an egress XBackend's CA (`ca.crt`) or injected credential (api/egress.py).

    Its values never appear in a repr, a log line or an error: `data` (base64, as Kubernetes stores it)
    and `stringData` are kept out of `repr`, and `value` decodes one key on demand."""

    KIND: ClassVar[str] = "Secret"
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    string_data: dict[str, str] = Field(default_factory=dict, alias="stringData", repr=False)

    def value(self, key: str) -> bytes | None:
        """The decoded value of `key`; None when absent or not base64 (never the value in an error)."""
        if key in self.string_data:
            return self.string_data[key].encode()
        if key not in self.data:
            return None
        import base64
        import binascii

        try:
            return base64.b64decode(self.data[key], validate=True)
        except (binascii.Error, ValueError):
            return None
