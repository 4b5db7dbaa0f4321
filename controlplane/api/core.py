"""Core and discovery kinds, so that a directory can describe a whole cluster:
Namespace, Service, ServiceAccount (v1) and EndpointSlice (discovery.k8s.io/v1)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from controlplane.api.base import LenientModel, Resource


class Namespace(Resource):
    KIND: ClassVar[str] = "Namespace"
    NAMESPACED: ClassVar[bool] = False


class ServiceAccount(Resource):
    KIND: ClassVar[str] = "ServiceAccount"


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


class Endpoint(LenientModel):
    addresses: list[str] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    zone: str | None = None

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
