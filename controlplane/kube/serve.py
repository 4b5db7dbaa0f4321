"""A control plane fed by a Kubernetes cluster: the CA shared through a Secret, the cluster source, and the
one elected writer of statuses and gateway infrastructure (`agentic-cp serve --in-cluster/--kubeconfig`)."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass

from controlplane.controller import ControlPlane, Settings
from controlplane.identity.ca import CertificateAuthority
from controlplane.kube.ca_secret import load_or_create_from_secret
from controlplane.kube.client import KubeApi
from controlplane.kube.cluster_sync import ClusterSync
from controlplane.kube.leader import LeaderElector
from controlplane.kube.provisioner import GatewayProvisioner
from controlplane.kube.startup import StartupRetry, retrying
from controlplane.sources.kubernetes import KubernetesSource


@dataclass(frozen=True)
class ClusterOptions:
    in_cluster: bool
    kubeconfig: str | None
    context: str | None
    namespace: str  # the control plane's own: its Lease, its CA Secret, its SPIFFE ID
    service_account: str
    ca_secret: str  # '' keeps the CA in the state dir
    proxy_image: str | None  # provision an Envoy per Gateway with it; None: no provisioning
    xds_service: str  # the xDS address provisioned gateways dial
    startup: StartupRetry = dataclasses.field(default_factory=StartupRetry)  # the CA Secret read at start, while the API server is unreachable

    def api(self) -> KubeApi:
        if self.in_cluster:
            return KubeApi.from_in_cluster()
        return KubeApi.from_kubeconfig(path=self.kubeconfig, context=self.context)


async def cluster_control_plane(options: ClusterOptions, settings: Settings) -> ControlPlane:
    """First the CA every replica shares (through the Secret `options.ca_secret`), then the control plane."""
    ca = None
    if options.ca_secret:
        api = options.api()
        try:
            ca = await retrying(f"reading the CA Secret {options.namespace}/{options.ca_secret}",
                                lambda: load_or_create_from_secret(api, namespace=options.namespace,
                                                                   name=options.ca_secret,
                                                                   trust_domain=settings.trust_domain),
                                retry=options.startup)
        finally:
            await api.close()
    return control_plane_for_cluster(options, settings, ca=ca)


def control_plane_for_cluster(options: ClusterOptions, settings: Settings, *,
                              ca: CertificateAuthority | None = None) -> ControlPlane:
    settings = dataclasses.replace(settings, namespace=options.namespace, service_account=options.service_account)
    control_plane = ControlPlane(source=KubernetesSource(api_client_factory=options.api), settings=settings, ca=ca)
    writer_api = options.api()
    # One elector for the status writer and the provisioner: only the leader writes either.
    elector = LeaderElector(api=writer_api, namespace=options.namespace,
                            identity=os.environ.get("POD_NAME") or socket.gethostname())
    provisioner = None
    if options.proxy_image:
        provisioner = GatewayProvisioner(api=writer_api, proxy_image=options.proxy_image,
                                         xds_address=options.xds_service, trust_domain=settings.trust_domain,
                                         namespace_of_control_plane=options.namespace,
                                         control_plane_service_account=options.service_account,
                                         issuer=control_plane.certificates, elector=elector)
    sync = ClusterSync(api=writer_api, graph=control_plane.graph, published=control_plane.published_gateways,
                       namespace=options.namespace, identity=elector.identity, provisioner=provisioner,
                       elector=elector, controller_name=settings.controller_names[0])
    control_plane.after_publish.append(sync.mark_dirty)

    async def write_until_stopped() -> None:
        try:
            await sync.run()
        finally:
            await writer_api.close()  # its HTTP session, or it leaks into whatever runs next

    control_plane.background.append(write_until_stopped)
    return control_plane
