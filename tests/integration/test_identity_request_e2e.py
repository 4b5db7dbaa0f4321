"""`agentic-cp identity request` against a real `agentic-cp serve`: an SVID for the proven identity only.

Both sides are the real programs in their own processes: serve on the quickstart folder, the CLI with
a bootstrap credential (`agentic-cp bootstrap --workload`) as its proof, then with the SVID it got.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.cli import main as cli
from controlplane.identity.ca import xds_roles_of_cert
from controlplane.identity.certificate_client import build_csr, request_certificate
from controlplane.identity.certificate_service import SERVICE
from controlplane.identity.xds_auth import spiffe_ids_of_cert
from controlplane.protos.agentic_cp.identity.v1 import CreateCertificateRequest, CreateCertificateResponse
from tests.support.envoy import free_port
from tests.support.processes import REPO_ROOT, repo_env, spawn, terminate, wait_for_port

pytestmark = pytest.mark.slow

AGENT = "spiffe://cluster.local/ns/quickstart/sa/math-agent"


@pytest.fixture
def served(tmp_path):
    """(xDS address, the bootstrap credential folder of quickstart/math-agent) with serve running."""
    state, port = tmp_path / "state", free_port()
    address = f"127.0.0.1:{port}"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["bootstrap", "--xds-address", address, "--state-dir", str(state), "--trust-domain",
                    "cluster.local", "--workload", "quickstart/math-agent", "--out", str(tmp_path / "boot")]) == 0
    proc = spawn([sys.executable, "-m", "controlplane.cli", "serve", "--config", str(REPO_ROOT / "examples" / "quickstart"),
                  "--state-dir", str(state), "--xds-address", address, "--admin-address", f"127.0.0.1:{free_port()}"],
                 log=tmp_path / "serve.log")
    try:
        wait_for_port(port, what="serve's xDS port", proc=proc, timeout=60)
        yield address, tmp_path / "boot"
    finally:
        terminate(proc)


def _identity_request(address: str, credentials: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", "identity", "request", "--xds-address", address,
                           "--credentials", str(credentials), "--out", str(out), *extra],
                          check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=repo_env())


def _svid(folder: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())


def test_a_bootstrap_credential_gets_an_svid_and_the_svid_renews_itself(served, tmp_path):
    address, boot = served
    first = _identity_request(address, boot, tmp_path / "svid", "--ttl", "10m")
    assert first.returncode == 0, first.stderr
    assert f"received {AGENT}" in first.stdout
    cert, bundle = _svid(tmp_path / "svid"), x509.load_pem_x509_certificate((tmp_path / "svid" / "bundle.pem").read_bytes())
    cert.verify_directly_issued_by(bundle)
    assert bundle == x509.load_pem_x509_certificate((boot / "bundle.pem").read_bytes())
    assert spiffe_ids_of_cert((tmp_path / "svid" / "cert.pem").read_bytes()) == [AGENT]
    assert xds_roles_of_cert((tmp_path / "svid" / "cert.pem").read_bytes()) == frozenset()
    assert timedelta(minutes=9) < cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(minutes=10)
    assert (tmp_path / "svid" / "key.pem").stat().st_mode & 0o777 == 0o600

    renewal = _identity_request(address, tmp_path / "svid", tmp_path / "renewed")
    assert renewal.returncode == 0, renewal.stderr
    assert spiffe_ids_of_cert((tmp_path / "renewed" / "cert.pem").read_bytes()) == [AGENT]
    assert _svid(tmp_path / "renewed").serial_number != cert.serial_number


def test_serve_refuses_another_identity_a_malformed_csr_and_a_caller_without_our_certificate(served, tmp_path):
    address, boot = served
    with pytest.raises(grpc.RpcError) as other:
        request_certificate(address, boot, spiffe_id="spiffe://cluster.local/ns/quickstart/sa/weather-agent")
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED

    def call(body: bytes, *, with_certificate: bool) -> CreateCertificateResponse:
        creds = grpc.ssl_channel_credentials(
            root_certificates=(boot / "bundle.pem").read_bytes(),
            **({"private_key": (boot / "key.pem").read_bytes(),
                "certificate_chain": (boot / "cert.pem").read_bytes()} if with_certificate else {}))
        with grpc.secure_channel(address, creds) as channel:
            return channel.unary_unary(f"/{SERVICE}/CreateCertificate", request_serializer=lambda b: b,
                                       response_deserializer=CreateCertificateResponse.parse)(body, timeout=10)

    with pytest.raises(grpc.RpcError) as malformed:
        call(bytes(CreateCertificateRequest(csr="-----BEGIN CERTIFICATE REQUEST-----\nAA==\n")), with_certificate=True)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    good = bytes(CreateCertificateRequest(csr=build_csr(ec.generate_private_key(ec.SECP256R1()), AGENT).decode()))
    with pytest.raises(grpc.RpcError) as anonymous:
        call(good, with_certificate=False)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE  # no client certificate: no handshake

    refused = _identity_request(address, boot, tmp_path / "too-long", "--ttl", "30d")
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr and not (tmp_path / "too-long").exists()
