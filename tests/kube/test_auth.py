"""Connecting the way a deployment does: kubeconfig and context, bearer tokens that rotate, TLS, in-cluster."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.kube.client import ApiError, KubeApi
from controlplane.kube.kinds import SERVICE
from controlplane.sources.kubernetes import KubernetesSource
from tests.kube.conftest import FAST, Consumer, fake_parse, obj
from tests.kube.fakeapi import FakeApiServer


async def list_services(api: KubeApi) -> dict:
    return await api.call(lambda k: k.core.list_service_for_all_namespaces)


async def test_bearer_token_from_kubeconfig_and_context(server, tmp_path):
    server.token = "s3cret"
    server.create(obj(SERVICE, "svc"))
    kubeconfig = server.write_kubeconfig(tmp_path / "config", token="s3cret", context="team")
    source = KubernetesSource(
        kubeconfig=str(kubeconfig),
        context="team",
        kinds=(SERVICE,),
        parse=fake_parse,
        name="kc",
        backoff=FAST,
    )
    async with Consumer(source) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        assert [r.name for r in consumer.changesets[0].upserts] == ["svc"]


async def test_wrong_token_is_refused(server, tmp_path):
    server.token = "s3cret"
    api = KubeApi.from_kubeconfig(path=str(server.write_kubeconfig(tmp_path / "config", token="nope")))
    with pytest.raises(ApiError) as refused:
        await list_services(api)
    assert refused.value.status == 401
    await api.close()


async def test_a_rotated_token_file_is_read_again(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first")
    server.token = "first"
    kubeconfig = server.write_kubeconfig(
        tmp_path / "config", token_file="token"
    )  # relative to the kubeconfig
    api = KubeApi.from_kubeconfig(path=str(kubeconfig), token_refresh=3600)
    await list_services(api)
    server.token = "second"
    token_file.write_text("second")
    await list_services(api)  # a 401 makes it re-read the file before giving up
    await api.close()


def _certificate(subject: str, key, issuer=None, issuer_key=None, *, ca=False, usage=None):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage == "server":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif usage == "client":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, certificate=None, key=None) -> str:
    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(path)


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("fake-ca", ca_key, ca=True)
    server_cert = _certificate("kube-apiserver", server_key, ca.subject, ca_key, usage="server")
    client_cert = _certificate("agentic-cp", client_key, ca.subject, ca_key, usage="client")
    return {
        "ca": _write(tmp_path / "ca.crt", ca),
        "server_cert": _write(tmp_path / "server.crt", server_cert),
        "server_key": _write(tmp_path / "server.key", key=server_key),
        "client_cert": _write(tmp_path / "client.crt", client_cert),
        "client_key": _write(tmp_path / "client.key", key=client_key),
    }


async def _tls_server(pki, *, require_client_cert: bool) -> FakeApiServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    context.load_cert_chain(pki["server_cert"], pki["server_key"])
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    server = FakeApiServer()
    await server.start(ssl_context=context)
    return server


async def test_tls_with_kubeconfig_ca_and_client_certificate(pki, tmp_path):
    server = await _tls_server(pki, require_client_cert=True)
    server.create(obj(SERVICE, "svc"))
    try:
        kubeconfig = server.write_kubeconfig(
            tmp_path / "config",
            ca_file=pki["ca"],
            client_cert=pki["client_cert"],
            client_key=pki["client_key"],
        )
        api = KubeApi.from_kubeconfig(path=str(kubeconfig))
        listed = await list_services(api)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["svc"]
        await api.close()
    finally:
        await server.stop()


async def test_in_cluster_token_and_ca(pki, tmp_path):
    server = await _tls_server(pki, require_client_cert=False)
    server.token = "pod-token"
    token = tmp_path / "token"
    token.write_text("pod-token")
    port = server.url.rsplit(":", 1)[1]
    try:
        api = KubeApi.from_in_cluster(
            token_path=str(token),
            ca_path=pki["ca"],
            environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port},
        )
        await list_services(api)
        server.token = "rotated"
        token.write_text("rotated")
        await list_services(api)
        await api.close()
    finally:
        await server.stop()
