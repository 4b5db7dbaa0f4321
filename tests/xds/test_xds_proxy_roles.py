"""Only a proxy credential opens a proxy's xDS stream: an agent's workload SVID names the same kind of
SPIFFE ID as a ``sidecar~NS~SA`` node, but lacks the xDS role, so it cannot read the proxy's config."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from cryptography import x509

from controlplane.cli import main
from controlplane.identity.ca import CertificateAuthority, xds_roles_of_cert
from controlplane.identity.rotation import CertificateManager
from controlplane.identity.spiffe import spiffe_id
from controlplane.identity.xds_auth import (
    authorize_by_spiffe_id,
    channel_credentials,
    issue_proxy_identity,
    issue_server_identity,
    server_credentials,
)
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resources import CLUSTER
from controlplane.xds.server import XdsServer
from tests.xds.adsclient import AdsClient
from tests.xds.xds_helpers import snapshot_of

TD = "example.org"
AGENT = spiffe_id(TD, "team-a", "agent")
SIDECAR_NODE = "sidecar~team-a~agent"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(trust_domain=TD)


@pytest.fixture
async def mtls_server(ca):
    cache = SnapshotCache()
    cache.set_snapshot(SIDECAR_NODE, snapshot_of({CLUSTER: "A"}))
    server = XdsServer(cache=cache, authorize=authorize_by_spiffe_id(TD))
    await server.start("127.0.0.1:0", server_credentials(ca, server_identity=issue_server_identity(ca)))
    yield server
    await server.stop(None)


async def _status(server: XdsServer, ca: CertificateAuthority, identity, node_id: str = SIDECAR_NODE):
    credentials = channel_credentials(bundle_pem=ca.bundle_pem, identity=identity)
    async with AdsClient(f"localhost:{server.port}", node_id=node_id, credentials=credentials) as client:
        client.send(CLUSTER)
        try:
            await client.recv()
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""


async def test_workload_certificate_is_not_a_proxy_credential(ca, mtls_server):
    code, details = await _status(mtls_server, ca, ca.issue(AGENT))  # what `identity issue` hands an agent
    assert code == grpc.StatusCode.PERMISSION_DENIED and "xDS role 'sidecar'" in details
    gateway_role = issue_proxy_identity(ca, AGENT, role="gateway")
    assert (await _status(mtls_server, ca, gateway_role))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert await _status(mtls_server, ca, issue_proxy_identity(ca, AGENT, role="sidecar")) == (
        grpc.StatusCode.OK, "")
    assert mtls_server.registry.get_sample_value("xds_rejected_streams_total", {"reason": "auth"}) == 2


def test_proxy_credential_keeps_exactly_one_uri_san_and_names_its_role(ca):
    proxy = issue_proxy_identity(ca, AGENT, role="gateway")
    san = proxy.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [AGENT]
    assert xds_roles_of_cert(proxy.cert_pem) == {"gateway"} and proxy.xds_role == "gateway"
    assert xds_roles_of_cert(ca.issue(AGENT).cert_pem) == frozenset()
    with pytest.raises(ValueError):
        issue_proxy_identity(ca, AGENT, role="admin")


def test_cli_bootstrap_issues_proxy_credentials_and_identity_issue_does_not(tmp_path, capsys):
    state = str(tmp_path / "state")
    common = ["--xds-address", "127.0.0.1:15010", "--state-dir", state, "--admin-port", "0"]
    assert main(["bootstrap", *common, "--gateway", "ns/gw", "--out", str(tmp_path / "gw")]) == 0
    assert main(["bootstrap", *common, "--workload", "ns/sa", "--out", str(tmp_path / "sa")]) == 0
    assert main(["identity", "issue", "--state-dir", state, "--spiffe-id", "spiffe://cluster.local/ns/ns/sa/sa",
                 "--out", str(tmp_path / "agent")]) == 0
    capsys.readouterr()
    assert xds_roles_of_cert((tmp_path / "gw" / "cert.pem").read_bytes()) == {"gateway"}
    assert xds_roles_of_cert((tmp_path / "sa" / "cert.pem").read_bytes()) == {"sidecar"}
    assert xds_roles_of_cert((tmp_path / "agent" / "cert.pem").read_bytes()) == frozenset()


def test_certificate_manager_gives_the_role_and_keeps_it_through_renewal(ca):
    manager = CertificateManager(ca, ttl=timedelta(hours=1))
    gateway = spiffe_id(TD, "ns", "gw")
    plain = manager.get(gateway)  # e.g. the listener certificate, asked for first
    proxy = manager.get(gateway, xds_role="gateway")  # the provisioner's
    assert plain.xds_role is None and proxy.xds_role == "gateway"
    assert manager.get(gateway) is proxy  # one SVID per ID: the listener gets the same one now
    [renewed] = manager.renew_due(proxy.not_after)
    assert renewed == gateway and manager.get(gateway).xds_role == "gateway"
