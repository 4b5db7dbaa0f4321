"""mTLS on a real grpc.aio server and client over loopback."""

from datetime import UTC
from types import SimpleNamespace

import grpc
import pytest
from cryptography import x509

from controlplane.identity.xds_auth import (
    NodeId,
    authorize_by_spiffe_id,
    channel_credentials,
    control_plane_identity,
    expected_spiffe_id,
    issue_server_identity,
    node_id_for_gateway,
    node_id_for_workload,
    parse_node_id,
    peer_spiffe_id,
    proxy_identity_for_gateway,
    server_credentials,
    spiffe_ids_of_cert,
)
from controlplane.xds.peer import VerifiedPeer

AGENT = "spiffe://example.org/ns/team-a/sa/agent"
SERVICE, METHOD = "agentic.test.Identity", "WhoAmI"


def test_names():
    assert control_plane_identity("example.org") == "spiffe://example.org/ns/agentic-system/sa/agentic-cp"
    assert proxy_identity_for_gateway("example.org", "gw-ns", "mcp-gw") == "spiffe://example.org/ns/gw-ns/sa/mcp-gw"
    assert node_id_for_gateway("gw-ns", "mcp-gw") == "gateway~gw-ns~mcp-gw"
    assert node_id_for_workload("team-a", "agent") == "sidecar~team-a~agent"
    assert parse_node_id("gateway~gw-ns~mcp-gw") == NodeId("gateway", "gw-ns", "mcp-gw")
    assert expected_spiffe_id("example.org", "sidecar~team-a~agent") == AGENT


def test_authorize_binds_node_id_to_certificate():
    authorize = authorize_by_spiffe_id("example.org")
    sidecar = VerifiedPeer(AGENT, frozenset({"sidecar"}))
    assert authorize(sidecar, SimpleNamespace(id="sidecar~team-a~agent")) == "sidecar~team-a~agent"
    for peer, node_id in [
        (None, "sidecar~team-a~agent"),  # plaintext
        (sidecar, "sidecar~team-a~other"),  # asks for someone else's config
        (sidecar, "garbage"),
        (VerifiedPeer("spiffe://other.org/ns/team-a/sa/agent", frozenset({"sidecar"})), "sidecar~team-a~agent"),
        (AGENT, "sidecar~team-a~agent"),  # the agent's workload certificate: no xDS role
        (VerifiedPeer(AGENT, frozenset({"gateway"})), "sidecar~team-a~agent"),  # another role
    ]:
        with pytest.raises(PermissionError):
            authorize(peer, SimpleNamespace(id=node_id))


@pytest.mark.parametrize("bad", ["gateway~a", "router~a~b", "gateway~~b", "gateway~a~b~c", ""])
def test_parse_node_id_rejects(bad):
    with pytest.raises(ValueError):
        parse_node_id(bad)


def test_server_identity_sans(ca):
    ident = issue_server_identity(ca, hosts=["cp.agentic-system.svc", "10.1.2.3"])
    assert spiffe_ids_of_cert(ident.cert_pem) == [control_plane_identity("example.org")]
    san = ident.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "cp.agentic-system.svc"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3"]


def test_peer_spiffe_id_without_cert():
    assert peer_spiffe_id({}) is None
    assert peer_spiffe_id({"x509_pem_cert": [b"not a pem"]}) is None


async def _who_am_i(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return (peer_spiffe_id(context.auth_context()) or "").encode()


@pytest.fixture
async def mtls_server(ca):
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_who_am_i)  # bytes in, bytes out
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler})])
    creds = server_credentials(ca, server_identity=issue_server_identity(ca))
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)


async def _call(target: str, creds: grpc.ChannelCredentials) -> str:
    async with grpc.aio.secure_channel(target, creds) as channel:
        reply = await channel.unary_unary(f"/{SERVICE}/{METHOD}")(b"", timeout=5, wait_for_ready=False)
    return reply.decode()


async def test_server_sees_the_client_spiffe_id(ca, mtls_server):
    creds = channel_credentials(bundle_pem=ca.bundle_pem, identity=ca.issue(AGENT))
    assert await _call(mtls_server, creds) == AGENT


async def test_client_without_certificate_is_refused(ca, mtls_server):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(mtls_server, channel_credentials(bundle_pem=ca.bundle_pem, identity=None))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_with_certificate_from_another_ca_is_refused(ca, other_ca, mtls_server):
    creds = channel_credentials(bundle_pem=ca.bundle_pem, identity=other_ca.issue(AGENT))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(mtls_server, creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_refuses_a_server_from_another_ca(other_ca, mtls_server):
    creds = channel_credentials(bundle_pem=other_ca.bundle_pem, identity=other_ca.issue(AGENT))
    with pytest.raises(grpc.aio.AioRpcError):
        await _call(mtls_server, creds)


async def test_server_certificate_is_renewed_without_a_restart():
    from datetime import datetime, timedelta

    from controlplane.identity.ca import CertificateAuthority
    from controlplane.identity.xds_auth import RenewingServerCredentials

    ca = CertificateAuthority.create(trust_domain="cluster.local")
    now = [datetime.now(UTC)]
    creds = RenewingServerCredentials(
        ca, lambda: ca.issue("spiffe://cluster.local/ns/agentic-system/sa/agentic-cp", ttl=timedelta(hours=1),
                             now=now[0]), clock=lambda: now[0])
    first = creds.identity
    assert creds.fetch() is None and creds.identity is first
    now[0] += timedelta(minutes=40)  # past half its lifetime
    assert creds.fetch() is not None and creds.identity is not first
    assert creds.identity.certificate().serial_number != first.certificate().serial_number
    assert creds.fetch() is None  # renewed once, not on every handshake
