"""mTLS on the xDS channel, and how a proxy's node id relates to its SPIFFE ID.

xDS carries every proxy's private keys (SDS) and policies, so the control plane only talks to proxies that
present an SVID from its own CA, and proxies only accept a control plane that presents the control plane's
SPIFFE ID. A node id is a claim the proxy makes about itself; ``expected_spiffe_id`` turns that claim into
the SPIFFE ID its certificate must carry, so a server can refuse a proxy asking for another's config.

Naming: a gateway's proxy runs as a ServiceAccount named like the Gateway (as kgateway does), so its ID is
``spiffe://<td>/ns/<ns>/sa/<gateway>``. Node ids are ``gateway~<ns>~<name>``, ``egress~<ns>~<name>`` (an egress Gateway) and ``sidecar~<ns>~<sa>``
(``~`` cannot appear in Kubernetes names, so the split is unambiguous).

A SPIFFE ID alone does not make a proxy: an agent's workload SVID for ``ns/NS/sa/SA`` names the same ID a
``sidecar~NS~SA`` node must present. So proxy credentials also carry their xDS role (``issue_proxy_identity``,
see identity/ca.py) and ``authorize_by_spiffe_id`` admits a node only with a certificate holding its role.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from cryptography import x509

from controlplane.identity.ca import CertificateAuthority, IssuedIdentity
from controlplane.identity.spiffe import SPIFFE_ID_PATTERN, spiffe_id

__all__ = [
    "CONTROL_PLANE_NAMESPACE",
    "CONTROL_PLANE_SERVICE_ACCOUNT",
    "EGRESS_ROLE",
    "GATEWAY_ROLE",
    "SIDECAR_ROLE",
    "NodeId",
    "authorize_by_spiffe_id",
    "channel_credentials",
    "control_plane_identity",
    "expected_spiffe_id",
    "issue_proxy_identity",
    "issue_server_identity",
    "node_id_for_egress",
    "node_id_for_gateway",
    "node_id_for_workload",
    "parse_node_id",
    "peer_spiffe_id",
    "proxy_identity_for_gateway",
    "server_credentials",
    "spiffe_ids_of_cert",
]

CONTROL_PLANE_NAMESPACE = "agentic-system"
CONTROL_PLANE_SERVICE_ACCOUNT = "agentic-cp"
GATEWAY_ROLE = "gateway"
SIDECAR_ROLE = "sidecar"
EGRESS_ROLE = "egress"  # an egress Gateway's proxy (translate/roles/egress.py): egress~NS~GATEWAY
_ROLES = (GATEWAY_ROLE, SIDECAR_ROLE, EGRESS_ROLE)
_SEP = "~"


@dataclass(frozen=True)
class NodeId:
    """A parsed node id: ``role`` is ``gateway`` or ``sidecar``; ``name`` is the Gateway or ServiceAccount."""

    role: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return _SEP.join((self.role, self.namespace, self.name))


# -- names ------------------------------------------------------------------------------------------------
def control_plane_identity(
    trust_domain: str,
    *,
    namespace: str = CONTROL_PLANE_NAMESPACE,
    service_account: str = CONTROL_PLANE_SERVICE_ACCOUNT,
) -> str:
    """The SPIFFE ID the xDS server presents and every bootstrap pins."""
    return spiffe_id(trust_domain, namespace, service_account)


def proxy_identity_for_gateway(trust_domain: str, namespace: str, gateway_name: str) -> str:
    return spiffe_id(trust_domain, namespace, gateway_name)


def node_id_for_gateway(namespace: str, name: str) -> str:
    return str(NodeId(GATEWAY_ROLE, namespace, name))


def node_id_for_egress(namespace: str, name: str) -> str:
    return str(NodeId(EGRESS_ROLE, namespace, name))


def node_id_for_workload(namespace: str, service_account: str) -> str:
    return str(NodeId(SIDECAR_ROLE, namespace, service_account))


def parse_node_id(node_id: str) -> NodeId:
    """Parse ``<role>~<ns>~<name>``; raises ValueError for anything else."""
    parts = node_id.split(_SEP)
    if len(parts) != 3 or parts[0] not in _ROLES or not all(parts):
        raise ValueError(f"invalid node id {node_id!r}: want gateway~NS~NAME, egress~NS~NAME or "
                         "sidecar~NS~SERVICEACCOUNT")
    return NodeId(*parts)


def expected_spiffe_id(trust_domain: str, node_id: str) -> str:
    """The SPIFFE ID a proxy with ``node_id`` must present (gateways and sidecars alike: ns + SA name)."""
    node = parse_node_id(node_id)
    return spiffe_id(trust_domain, node.namespace, node.name)


def authorize_by_spiffe_id(trust_domain: str) -> Callable[[str | None, Any], str]:
    """An xDS ``authorize(peer_identity, node) -> node_key`` hook: a proxy may only read the config of the
    node id its certificate stands for. Raises PermissionError on plaintext, a foreign ID or a mismatch."""

    def authorize(peer_identity: str | None, node: Any) -> str:
        node_id = getattr(node, "id", "")
        if peer_identity is None:
            raise PermissionError("no verified client certificate")
        try:
            want = expected_spiffe_id(trust_domain, node_id)
        except ValueError as exc:
            raise PermissionError(str(exc)) from exc
        if peer_identity != want:
            raise PermissionError(f"node {node_id!r} must present {want}, not {peer_identity}")
        role = parse_node_id(node_id).role
        if role not in getattr(peer_identity, "xds_roles", frozenset()):
            raise PermissionError(
                f"node {node_id!r} needs a certificate issued for the xDS role {role!r}; {peer_identity} holds "
                f"a workload certificate (issue proxy credentials with `agentic-cp bootstrap`)")
        return node_id

    return authorize


# -- certificates -----------------------------------------------------------------------------------------
def issue_proxy_identity(
    ca: CertificateAuthority, spiffe_id: str, *, role: str, ttl: timedelta = timedelta(hours=24)
) -> IssuedIdentity:
    """A proxy's xDS client credential: its SVID marked with the xDS ``role`` (gateway or sidecar)."""
    if role not in _ROLES:
        raise ValueError(f"unknown xDS role {role!r}: want one of {', '.join(_ROLES)}")
    return ca.issue(spiffe_id, ttl=ttl, xds_role=role)


def issue_server_identity(
    ca: CertificateAuthority,
    *,
    hosts: Iterable[str] = (),
    ttl: timedelta = timedelta(hours=24),
    namespace: str = CONTROL_PLANE_NAMESPACE,
    service_account: str = CONTROL_PLANE_SERVICE_ACCOUNT,
) -> IssuedIdentity:
    """The xDS server's SVID: the control plane's SPIFFE ID plus DNS/IP SANs for ``localhost``, 127.0.0.1 and
    each of ``hosts``, so both Envoy (URI SAN pin) and plain gRPC clients (hostname check) accept it.

    ``namespace`` and ``service_account`` must be the ones the provisioned bootstraps pin (the control
    plane's own, in a cluster), or every proxy refuses the server."""
    dns, ips = ["localhost"], ["127.0.0.1"]
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    identity = control_plane_identity(ca.trust_domain, namespace=namespace, service_account=service_account)
    return ca.issue(identity, dns_names=dns, ip_addresses=ips, ttl=ttl)


def spiffe_ids_of_cert(cert_pem: bytes) -> list[str]:
    """Every valid SPIFFE URI SAN in a PEM certificate (an SVID carries exactly one)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if SPIFFE_ID_PATTERN.match(u)]


def peer_spiffe_id(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The caller's SPIFFE ID from ``context.auth_context()`` of a grpc(.aio) server, or None.

    gRPC puts the verified peer leaf in ``x509_pem_cert``; it is only present when the TLS handshake
    verified a client certificate, so a value here is already vouched for by our CA. A cert with zero or
    several SPIFFE IDs yields None: an SVID has exactly one.
    """
    pems = auth_context.get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        ids = spiffe_ids_of_cert(pems[0])
    except ValueError:
        return None
    return ids[0] if len(ids) == 1 else None


def server_credentials(ca: CertificateAuthority, *, server_identity: IssuedIdentity) -> grpc.ServerCredentials:
    """TLS credentials for the xDS server: present ``server_identity``, require a client SVID from ``ca``."""
    return grpc.ssl_server_credentials(
        [(server_identity.key_pem, server_identity.chain_pem)],
        root_certificates=ca.bundle_pem,
        require_client_auth=True,
    )


class RenewingServerCredentials:
    """xDS server credentials whose certificate is re-issued past its renewal point, without a restart.

    gRPC asks `fetch` for the certificate on each new handshake; existing streams keep theirs. A server
    running longer than its certificate's lifetime would otherwise refuse every reconnecting proxy.
    """

    def __init__(self, ca: CertificateAuthority, issue: Callable[[], IssuedIdentity], *,
                 renew_fraction: float = 0.5, clock: Callable[[], datetime] | None = None):
        self._ca = ca
        self._issue = issue
        self._renew_fraction = renew_fraction
        self._clock = clock or (lambda: datetime.now(UTC))
        self.identity = issue()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(), self.fetch, require_client_authentication=True)

    def fetch(self):
        """A new certificate configuration when the current one is due for renewal, else None."""
        due = self.identity.not_before + (self.identity.not_after - self.identity.not_before) * self._renew_fraction
        if self._clock() < due:
            return None
        self.identity = self._issue()
        return self._configuration()

    def _configuration(self):
        return grpc.ssl_server_certificate_configuration(
            [(self.identity.key_pem, self.identity.chain_pem)], root_certificates=self._ca.bundle_pem)


def channel_credentials(*, bundle_pem: bytes, identity: IssuedIdentity | None) -> grpc.ChannelCredentials:
    """Client-side TLS credentials (tests, tools): trust ``bundle_pem``, present ``identity`` if given."""
    if identity is None:
        return grpc.ssl_channel_credentials(root_certificates=bundle_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=bundle_pem, private_key=identity.key_pem, certificate_chain=identity.chain_pem
    )
