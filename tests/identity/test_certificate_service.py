"""The identity API over real mTLS on the xDS server's port, in process: who gets what, who gets nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.identity import xds_auth
from controlplane.identity.ca import CertificateAuthority, xds_roles_of_cert
from controlplane.identity.certificate_client import build_csr, request_certificate
from controlplane.identity.certificate_service import SERVICE, CertificateService
from controlplane.identity.csr import SigningPolicy
from controlplane.identity.files import write_identity
from controlplane.protos.agentic_cp.identity.v1 import CreateCertificateRequest, CreateCertificateResponse
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import XdsServer, trust_node_id

AGENT = "spiffe://example.org/ns/agents/sa/planner"
POLICY = SigningPolicy(default_ttl=timedelta(hours=1), max_ttl=timedelta(hours=2))


@pytest.fixture
async def address(ca: CertificateAuthority):
    """An XdsServer carrying the identity API, with the control plane's own mTLS credentials."""
    server = XdsServer(cache=SnapshotCache(), authorize=trust_node_id,
                       extra_handlers=[CertificateService(ca, POLICY).handler()])
    credentials = xds_auth.server_credentials(ca, server_identity=xds_auth.issue_server_identity(ca))
    port = await server.start("127.0.0.1:0", credentials)
    yield f"127.0.0.1:{port}"
    await server.stop(0)


def _credentials(tmp_path: Path, ca: CertificateAuthority, identity=None, **issue) -> Path:
    identity = identity or ca.issue(AGENT, **issue)
    return write_identity(tmp_path / "creds", identity, ca.bundle_pem).cert.parent


async def _request(address: str, creds: Path, **kwargs):
    return await asyncio.to_thread(request_certificate, address, creds, timeout=5, **kwargs)


async def test_a_proven_identity_gets_a_fresh_svid_for_itself(address, ca, tmp_path):
    creds = _credentials(tmp_path, ca, xds_auth.issue_proxy_identity(ca, AGENT, role=xds_auth.SIDECAR_ROLE))
    received = await _request(address, creds, ttl=timedelta(minutes=30))
    cert = received.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert xds_auth.spiffe_ids_of_cert(received.chain_pem) == [AGENT]
    assert received.bundle_pem == ca.bundle_pem
    assert xds_roles_of_cert(received.chain_pem) == frozenset()  # a workload SVID, never a proxy credential
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(minutes=29) < lifetime <= timedelta(minutes=30)


async def test_without_a_ttl_the_server_default_applies_and_a_renewal_works(address, ca, tmp_path):
    first = await _request(address, _credentials(tmp_path, ca))
    assert timedelta(minutes=59) < first.certificate.not_valid_after_utc - datetime.now(UTC) <= timedelta(hours=1)
    renewed_dir = write_identity(tmp_path / "renewed", first, first.bundle_pem).cert.parent
    second = await _request(address, renewed_dir)  # the SVID just received is proof enough for the next
    assert second.spiffe_id == AGENT and second.certificate.serial_number != first.certificate.serial_number


async def test_asking_for_another_identity_is_refused(address, ca, tmp_path):
    with pytest.raises(grpc.RpcError) as refused:
        await _request(address, _credentials(tmp_path, ca), spiffe_id="spiffe://example.org/ns/tools/sa/db")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "caller proved spiffe://example.org/ns/agents/sa/planner" in refused.value.details()


async def test_a_lifetime_beyond_the_policy_is_refused(address, ca, tmp_path):
    with pytest.raises(grpc.RpcError) as refused:
        await _request(address, _credentials(tmp_path, ca), ttl=timedelta(hours=3))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _raw_call(address: str, ca: CertificateAuthority, body: bytes, identity) -> CreateCertificateResponse:
    creds = xds_auth.channel_credentials(bundle_pem=ca.bundle_pem, identity=identity)
    with grpc.secure_channel(address, creds) as channel:
        call = channel.unary_unary(f"/{SERVICE}/CreateCertificate", request_serializer=lambda b: b,
                                   response_deserializer=CreateCertificateResponse.parse)
        return call(body, timeout=5)


@pytest.mark.parametrize("body", [bytes(CreateCertificateRequest(csr="not a csr")), b"\xff\xff\xff"],
                         ids=["malformed-csr", "malformed-message"])
async def test_malformed_requests_are_invalid_arguments(address, ca, body):
    with pytest.raises(grpc.RpcError) as refused:
        await asyncio.to_thread(_raw_call, address, ca, body, ca.issue(AGENT))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("who", ["no-certificate", "another-ca"])
async def test_an_unauthenticated_caller_gets_nothing(address, ca, other_ca, who):
    identity = None if who == "no-certificate" else other_ca.issue(AGENT)
    body = bytes(CreateCertificateRequest(csr=build_csr(ec.generate_private_key(ec.SECP256R1()), AGENT).decode()))
    with pytest.raises(grpc.RpcError) as refused:
        await asyncio.to_thread(_raw_call, address, ca, body, identity)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself fails


async def test_without_mtls_the_service_answers_unauthenticated(ca):
    """Defence in depth: on a server without client authentication the service still signs nothing."""
    server = XdsServer(cache=SnapshotCache(), authorize=trust_node_id,
                       extra_handlers=[CertificateService(ca, POLICY).handler()])
    port = await server.start("127.0.0.1:0")
    body = bytes(CreateCertificateRequest(csr=build_csr(ec.generate_private_key(ec.SECP256R1()), AGENT).decode()))
    try:
        def call():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                return channel.unary_unary(f"/{SERVICE}/CreateCertificate", request_serializer=lambda b: b,
                                           response_deserializer=CreateCertificateResponse.parse)(body, timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(call)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)
