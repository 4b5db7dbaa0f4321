"""The CA shared through a Kubernetes Secret: every replica ends up issuing from one root.

Against the fake apiserver (with the core v1 Secret kind added to its table): creation races resolved
by the apiserver's 409, an existing Secret loaded, a foreign trust domain refused, and two whole
`serve --kubeconfig` control planes (separate state dirs, as separate pods' emptyDirs are) whose
certificates verify against each other.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from datetime import timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

from controlplane.cli import _kubernetes_control_plane, _parser
from controlplane.controller import Settings
from controlplane.identity.ca import CaStateError, CertificateAuthority, TrustDomainMismatch
from controlplane.identity.xds_auth import (
    channel_credentials,
    control_plane_identity,
    proxy_identity_for_gateway,
    spiffe_ids_of_cert,
)
from controlplane.kube.ca_secret import SECRET, ca_secret, load_or_create_from_secret
from controlplane.kube.client import KubeApi
from controlplane.kube.kinds import ALL_KINDS, LEASE
from controlplane.xds import resources as types
from tests.kube.fakeapi import FakeApiServer
from tests.kube.test_serve_in_cluster import NODE, quickstart_objects, wait_for

NAMESPACE, NAME, TD = "agentic-system", "agentic-cp-ca", "cluster.local"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


@pytest.fixture
async def fake() -> FakeApiServer:
    server = FakeApiServer(kinds=ALL_KINDS + (LEASE, SECRET))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def clients(fake):
    made: list[KubeApi] = []

    def make() -> KubeApi:
        made.append(KubeApi(host=fake.url))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def verifies(leaf_pem: bytes, bundle_pem: bytes) -> bool:
    """Does the root in `bundle_pem` sign `leaf_pem`? (The root signs leaves directly.)"""
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    root = x509.load_pem_x509_certificate(bundle_pem)
    try:
        leaf.verify_directly_issued_by(root)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def posts(fake: FakeApiServer) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("/secrets"))


# --- load_or_create_from_secret ------------------------------------------------------------------------


async def test_first_replica_creates_the_secret_and_the_next_loads_it(fake, clients):
    first = await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)
    stored = fake.get(SECRET, NAMESPACE, NAME)
    assert stored["type"] == "Opaque"
    assert base64.b64decode(stored["data"]["ca.pem"]) == first.bundle_pem
    assert base64.b64decode(stored["data"]["trust-domain"]).decode().strip() == TD
    second = await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)
    assert second.bundle_pem == first.bundle_pem
    assert verifies(second.issue(f"spiffe://{TD}/ns/a/sa/b").cert_pem, first.bundle_pem)
    assert posts(fake) == 1


async def test_replicas_racing_to_create_end_up_with_one_ca(fake, clients):
    cas = await asyncio.gather(*(load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME,
                                                            trust_domain=TD) for _ in range(5)))
    stored = base64.b64decode(fake.get(SECRET, NAMESPACE, NAME)["data"]["ca.pem"])
    assert {ca.bundle_pem for ca in cas} == {stored}
    assert len(fake.objects(SECRET)) == 1


async def test_a_lost_create_race_loads_the_winners_ca(fake, clients):
    """Deterministically: this replica's GET saw no Secret, then another replica created it first, so
    this replica's POST gets 409 AlreadyExists; it must read and use the winner's CA, not its own."""
    winner = CertificateAuthority.create(trust_domain=TD)
    fake.create(ca_secret(winner, namespace=NAMESPACE, name=NAME))
    fake.inject(method="GET", path_contains=f"/secrets/{NAME}", status=404)  # the GET before the race
    ca = await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)
    assert ca.bundle_pem == winner.bundle_pem
    assert posts(fake) == 1  # it did try, and lost
    assert base64.b64decode(fake.get(SECRET, NAMESPACE, NAME)["data"]["ca.pem"]) == winner.bundle_pem


async def test_an_existing_secret_is_loaded_with_its_key(fake, clients):
    existing = CertificateAuthority.create(trust_domain=TD)
    fake.create(ca_secret(existing, namespace=NAMESPACE, name=NAME))
    ca = await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)
    assert ca.bundle_pem == existing.bundle_pem and ca.key_pem() == existing.key_pem()
    assert posts(fake) == 0


async def test_a_secret_for_another_trust_domain_is_an_error(fake, clients):
    fake.create(ca_secret(CertificateAuthority.create(trust_domain="example.org"), namespace=NAMESPACE, name=NAME))
    with pytest.raises(TrustDomainMismatch, match=r"'example.org', not 'cluster.local'.*--trust-domain example.org"):
        await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)
    assert posts(fake) == 0  # never replaced


async def test_a_broken_or_missing_secret_or_a_refusal_is_a_clear_error(fake, clients):
    with pytest.raises(CaStateError, match="does not exist"):
        await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD,
                                         create_if_missing=False)
    assert fake.objects(SECRET) == {}

    broken = ca_secret(CertificateAuthority.create(trust_domain=TD), namespace=NAMESPACE, name=NAME)
    del broken["data"]["ca-key.pem"]
    fake.create(broken)
    with pytest.raises(CaStateError, match="no key 'ca-key.pem'"):
        await load_or_create_from_secret(clients(), namespace=NAMESPACE, name=NAME, trust_domain=TD)

    other = ca_secret(CertificateAuthority.create(trust_domain=TD), namespace=NAMESPACE, name="mixed")
    other["data"]["ca-key.pem"] = broken["data"]["ca.pem"]  # a cert where the key should be
    fake.create(other)
    with pytest.raises(CaStateError, match="Secret agentic-system/mixed"):
        await load_or_create_from_secret(clients(), namespace=NAMESPACE, name="mixed", trust_domain=TD)

    fake.forbid("secrets", ("get", "create"))
    with pytest.raises(CaStateError, match="cannot read Secret agentic-system/other.*forbidden"):
        await load_or_create_from_secret(clients(), namespace=NAMESPACE, name="other", trust_domain=TD)


def test_secret_round_trip_keeps_the_key_private_to_the_pem():
    ca = CertificateAuthority.create(trust_domain=TD)
    again = CertificateAuthority.from_pem(trust_domain=TD, cert_pem=ca.bundle_pem, key_pem=ca.key_pem())
    assert isinstance(again.issue(f"spiffe://{TD}/ns/a/sa/b").certificate().public_key(), ec.EllipticCurvePublicKey)
    assert verifies(again.issue(f"spiffe://{TD}/ns/a/sa/b").cert_pem, ca.bundle_pem)


# --- two whole control planes ---------------------------------------------------------------------------


def serve_args(kubeconfig, state_dir, *extra: str):
    return _parser().parse_args(["serve", "--kubeconfig", str(kubeconfig), "--state-dir", str(state_dir),
                                 "--namespace", NAMESPACE, "--xds-address", "127.0.0.1:0",
                                 "--admin-address", "127.0.0.1:0", *extra])


def settings_for(state_dir) -> Settings:
    return Settings(state_dir=state_dir, trust_domain=TD, xds_address="127.0.0.1:0", admin_address="127.0.0.1:0")


async def server_certificate(port: int, *, bundle_pem: bytes, client, tmp_path) -> bytes:
    """The xDS server's certificate (PEM), from a TLS handshake that verifies it against `bundle_pem`
    while presenting `client` (the server requires a client SVID)."""
    context = ssl.create_default_context(cadata=bundle_pem.decode())
    context.check_hostname = False  # the SPIFFE ID is what is pinned, checked by the caller
    context.set_alpn_protocols(["h2"])
    (tmp_path / "client.pem").write_bytes(client.cert_pem)
    (tmp_path / "client-key.pem").write_bytes(client.key_pem)
    context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client-key.pem")
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


async def first_listener_response(port: int, credentials, node_id: str) -> DiscoveryResponse:
    """One ADS request for listeners over mTLS, as a gateway's Envoy sends it, and the first answer."""
    sent = asyncio.Event()

    async def requests():
        yield bytes(DiscoveryRequest(node=Node(id=node_id, cluster="gateway"), type_url=types.LISTENER))
        sent.set()
        await asyncio.Event().wait()  # keep the stream open until cancelled

    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        call = channel.stream_stream(ADS, request_serializer=lambda b: b,
                                     response_deserializer=DiscoveryResponse.parse)(requests())
        try:
            return await asyncio.wait_for(call.read(), 10)
        finally:
            call.cancel()


async def test_two_control_planes_issue_from_one_ca_and_accept_each_others_proxies(fake, tmp_path, monkeypatch):
    for obj in quickstart_objects():
        fake.create(obj)
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    planes, tasks = [], []
    try:
        for replica in ("a", "b"):  # like two pods: own state dir (emptyDir), own name, same Secret
            monkeypatch.setenv("POD_NAME", f"agentic-cp-{replica}")
            state = tmp_path / f"state-{replica}"
            args = serve_args(kubeconfig, state, "--service-account", "cp-sa")
            planes.append(await _kubernetes_control_plane(args, settings_for(state)))
            tasks.append(asyncio.create_task(planes[-1].run()))
        a, b = planes
        await wait_for(lambda: all(p.cache.get(NODE) is not None and p.xds and p.xds.port for p in planes))

        # One root: the Secret's, and neither state dir got a CA of its own.
        stored = base64.b64decode(fake.get(SECRET, NAMESPACE, "agentic-cp-ca")["data"]["ca.pem"])
        assert a.ca.bundle_pem == b.ca.bundle_pem == stored
        assert not (tmp_path / "state-a" / "ca").exists() and not (tmp_path / "state-b" / "ca").exists()

        # Each replica's gateway certificate verifies against the other's bundle.
        gateway_id = proxy_identity_for_gateway(TD, "quickstart", "agent-gateway")
        # (with the xDS role the provisioner gives the proxy's credentials)
        from_a, from_b = (plane.certificates.get(gateway_id, xds_role="gateway") for plane in (a, b))
        assert from_a.cert_pem != from_b.cert_pem  # issued separately...
        assert verifies(from_a.cert_pem, b.certificates.bundle_pem)  # ...by the same root
        assert verifies(from_b.cert_pem, a.certificates.bundle_pem)

        # A proxy holding A's credentials (as the provisioned Secret would) connects to B, and B both
        # serves it its config and presents the SPIFFE ID that provisioned bootstraps pin.
        pinned = control_plane_identity(TD, namespace=NAMESPACE, service_account="cp-sa")
        for plane in (a, b):
            cert = await server_certificate(plane.xds.port, bundle_pem=a.ca.bundle_pem, client=from_a,
                                            tmp_path=tmp_path)
            assert spiffe_ids_of_cert(cert) == [pinned]
        credentials = channel_credentials(bundle_pem=a.ca.bundle_pem, identity=from_a)
        response = await first_listener_response(b.xds.port, credentials, NODE)
        assert response.type_url == types.LISTENER and response.resources

        # A proxy from some other CA (what a per-replica CA amounted to) is refused.
        stranger = CertificateAuthority.create(trust_domain=TD).issue(gateway_id, ttl=timedelta(hours=1))
        with pytest.raises(grpc.aio.AioRpcError):
            await first_listener_response(b.xds.port, channel_credentials(bundle_pem=a.ca.bundle_pem,
                                                                          identity=stranger), NODE)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_empty_ca_secret_keeps_the_state_dir_ca(fake, tmp_path):
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    state = tmp_path / "state"
    plane = await _kubernetes_control_plane(serve_args(kubeconfig, state, "--ca-secret", ""), settings_for(state))
    assert (state / "ca" / "ca.pem").read_bytes() == plane.ca.bundle_pem
    assert fake.objects(SECRET) == {}


async def test_a_foreign_ca_secret_stops_serve_with_a_usage_error(fake, tmp_path):
    from controlplane.cli import UsageError

    fake.create(ca_secret(CertificateAuthority.create(trust_domain="example.org"), namespace=NAMESPACE, name=NAME))
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(UsageError, match="trust domain 'example.org'"):
        await _kubernetes_control_plane(serve_args(kubeconfig, tmp_path / "s"), settings_for(tmp_path / "s"))


def test_namespace_and_service_account_come_from_flags_then_env_then_defaults(monkeypatch):
    from controlplane.cli import _control_plane_account

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_SERVICE_ACCOUNT", raising=False)
    parse = _parser().parse_args
    assert _control_plane_account(parse(["serve", "--in-cluster", "--state-dir", "s"])) == \
        ("agentic-system", "agentic-cp")
    monkeypatch.setenv("POD_NAMESPACE", "mesh")
    monkeypatch.setenv("POD_SERVICE_ACCOUNT", "mesh-cp")
    assert _control_plane_account(parse(["serve", "--in-cluster", "--state-dir", "s"])) == ("mesh", "mesh-cp")
    assert _control_plane_account(parse(["serve", "--in-cluster", "--state-dir", "s", "--namespace", "x",
                                         "--service-account", "y"])) == ("x", "y")

