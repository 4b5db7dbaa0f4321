"""Bootstraps are checked by Envoy itself: ``--mode validate``, and a real Envoy dialing a real mTLS xDS server."""

from __future__ import annotations

import asyncio
import json
import shlex
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.files import atomic_write, write_identity
from controlplane.identity.xds_auth import (
    expected_spiffe_id,
    issue_proxy_identity,
    issue_server_identity,
    node_id_for_gateway,
    node_id_for_workload,
    parse_node_id,
    peer_spiffe_id,
    server_credentials,
)
from controlplane.translate.bootstrap import base_id_for, bootstrap_files, render_bootstrap
from tests.support.envoy import EnvoyProcess, validate

TD = "example.org"


def _prepare(tmp_path: Path, ca: CertificateAuthority, *, node_id: str, xds_host: str, xds_port: int = 18000,
             admin_port: int = 0, **extra) -> Path:
    """Issue the proxy's SVID into ``tmp_path/creds`` and write a bootstrap into ``tmp_path/out``."""
    creds = tmp_path / "creds"
    proxy = issue_proxy_identity(ca, expected_spiffe_id(TD, node_id), role=parse_node_id(node_id).role)
    write_identity(creds, proxy, ca.bundle_pem)
    bootstrap = bootstrap_files(tmp_path / "out", credentials_dir=creds, node_id=node_id, node_cluster="agentic",
                                xds_host=xds_host, xds_port=xds_port, admin_port=admin_port, trust_domain=TD,
                                **extra)
    for path, content in bootstrap.files.items():
        atomic_write(path, content)
    return bootstrap.bootstrap_path


def test_render_shape(tmp_path):
    boot = render_bootstrap(node_id="gateway~ns~gw", node_cluster="gw", xds_host="cp.example", xds_port=15010,
                            admin_port=15000, credentials_dir=tmp_path, trust_domain=TD)
    assert boot["node"] == {"id": "gateway~ns~gw", "cluster": "gw"}
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["set_node_on_first_message_only"] is True
    assert boot["dynamic_resources"]["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    [cluster] = boot["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "cp.example"
    [san] = tls["common_tls_context"]["combined_validation_context"]["default_validation_context"][
        "match_typed_subject_alt_names"]
    assert san["matcher"] == {"exact": "spiffe://example.org/ns/agentic-system/sa/agentic-cp"}
    static = render_bootstrap(node_id="n~a~b", node_cluster="c", xds_host="127.0.0.1", xds_port=1, admin_port=2,
                              credentials_dir=tmp_path, trust_domain=TD, control_plane_spiffe_id="spiffe://x/y")
    [cluster] = static["static_resources"]["clusters"]
    assert cluster["type"] == "STATIC" and "sni" not in cluster["transport_socket"]["typed_config"]


def test_base_id_is_stable_and_spread():
    ids = {base_id_for(node_id_for_workload("ns", f"sa{i}")) for i in range(200)}
    assert len(ids) > 190
    assert base_id_for("gateway~a~b") == base_id_for("gateway~a~b")


def test_bootstrap_files_are_data_and_nothing_is_written(tmp_path, monkeypatch):
    """Rendering from a read-only working directory into directories that do not exist touches no disk."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    monkeypatch.chdir(readonly)
    try:
        bootstrap = bootstrap_files(Path("out"), credentials_dir=Path("creds"), node_id="gateway~ns~gw",
                                    node_cluster="gateway", xds_host="localhost", xds_port=15010, admin_port=0,
                                    trust_domain=TD)
    finally:
        readonly.chmod(0o755)
    assert list(readonly.iterdir()) == []
    assert sorted(p.relative_to(readonly).as_posix() for p in bootstrap.files) == [
        "creds/sds-xds-client-cert.yaml", "creds/sds-xds-trust-bundle.yaml", "out/envoy.yaml", "out/run.txt"]
    assert yaml.safe_load(bootstrap.files[bootstrap.bootstrap_path])["node"]["id"] == "gateway~ns~gw"
    assert str(bootstrap.bootstrap_path) in bootstrap.files[bootstrap.run_path].decode()


def test_write_bootstrap_files_and_run_command(tmp_path, ca):
    node = node_id_for_gateway("gw-ns", "mcp-gw")
    path = _prepare(tmp_path, ca, node_id=node, xds_host="localhost")
    out = tmp_path / "out"
    assert path == out / "envoy.yaml"
    assert yaml.safe_load(path.read_text())["node"]["id"] == node
    assert "&id" not in path.read_text()
    command = [line for line in (out / "run.txt").read_text().splitlines() if not line.startswith("#")]
    assert shlex.split(command[0])[1:] == ["-c", str(path), "--base-id", str(base_id_for(node)),
                                          "--file-flush-interval-msec", "1000"]
    assert sorted(p.name for p in (tmp_path / "creds").iterdir()) == [
        "bundle.pem", "cert.pem", "key.pem", "sds-xds-client-cert.yaml", "sds-xds-trust-bundle.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("node_id,xds_host", [
    (node_id_for_gateway("gw-ns", "mcp-gw"), "localhost"),
    (node_id_for_workload("team-a", "agent"), "127.0.0.1"),
    (node_id_for_workload("team-b", "agent"), "agentic-cp.agentic-system.svc.cluster.local"),
])
def test_envoy_validates_bootstrap(tmp_path, ca, node_id, xds_host):
    path = _prepare(tmp_path, ca, node_id=node_id, xds_host=xds_host, admin_port=15000)
    result = validate(path, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.mark.slow
def test_envoy_validate_notices_missing_credentials(tmp_path, ca):
    """The oracle is not a rubber stamp: missing SDS files fail validation."""
    path = _prepare(tmp_path, ca, node_id="gateway~ns~gw", xds_host="localhost")
    (tmp_path / "creds" / "sds-xds-client-cert.yaml").unlink()
    assert validate(path, timeout=30).returncode != 0


# -- a real Envoy dials a real mTLS ADS server ------------------------------------------------------------
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


class AdsRecorder:
    """Accepts ADS streams, records (peer SPIFFE ID, node id) of the first request, and holds the stream."""

    def __init__(self):
        self.seen: list[tuple[str | None, str]] = []
        self.event = asyncio.Event()

    async def stream(self, requests, context):
        async for req in requests:
            self.seen.append((peer_spiffe_id(context.auth_context()), req.node.id))
            self.event.set()
            await asyncio.Event().wait()  # never answer: the test only cares about who connected
        if False:
            yield b""


@pytest.fixture
async def ads_server(ca):
    recorder = AdsRecorder()
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(recorder.stream, request_deserializer=DiscoveryRequest.parse,
                                                    response_serializer=bytes)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        ADS_SERVICE, {"StreamAggregatedResources": handler})])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(ca, server_identity=issue_server_identity(ca)))
    await server.start()
    yield recorder, port
    await server.stop(grace=None)


async def _start_envoy(path: Path, tmp_path: Path) -> tuple[EnvoyProcess, str]:
    envoy = EnvoyProcess.start(path, log_path=tmp_path / "envoy.log", log_level="warning")
    try:
        await envoy.wait_until_async(lambda: envoy.admin_address_path.exists()
                                     and envoy.admin_address_path.read_text().strip(), "its admin address",
                                     timeout=10)
    except BaseException:
        envoy.stop()
        raise
    return envoy, envoy.admin_url.removeprefix("http://")


async def _admin_json(admin: str, path: str) -> dict:
    def get():
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as resp:
            return json.loads(resp.read())
    return await asyncio.to_thread(get)


async def _stop(envoy: EnvoyProcess) -> None:
    await asyncio.to_thread(envoy.stop)


async def _xds_client_serials(admin: str) -> list[int]:
    """Serials of the certificates Envoy presents (Envoy prints them as zero-padded hex)."""
    certs = (await _admin_json(admin, "/certs"))["certificates"]
    return [int(c["serial_number"], 16) for entry in certs for c in entry.get("cert_chain", [])]


@pytest.mark.slow
async def test_real_envoy_connects_with_its_svid_and_picks_up_rotation(tmp_path, ca, ads_server):
    recorder, port = ads_server
    node = node_id_for_gateway("gw-ns", "mcp-gw")
    path = _prepare(tmp_path, ca, node_id=node, xds_host="127.0.0.1", xds_port=port)
    envoy, admin = await _start_envoy(path, tmp_path)
    try:
        await asyncio.wait_for(recorder.event.wait(), timeout=10)
        assert recorder.seen[0] == ("spiffe://example.org/ns/gw-ns/sa/mcp-gw", node)

        before = await _xds_client_serials(admin)
        renewed = issue_proxy_identity(ca, expected_spiffe_id(TD, node), role="gateway")
        write_identity(tmp_path / "creds", renewed, ca.bundle_pem)
        want = renewed.certificate().serial_number
        for _ in range(100):
            after = await _xds_client_serials(admin)
            if want in after:
                break
            await asyncio.sleep(0.05)
        assert want in after and want not in before, (before, after)
    finally:
        await _stop(envoy)


@pytest.mark.slow
async def test_real_envoy_refuses_a_server_with_another_spiffe_id(tmp_path, ca, ads_server):
    recorder, port = ads_server
    path = _prepare(tmp_path, ca, node_id=node_id_for_gateway("gw-ns", "mcp-gw"), xds_host="127.0.0.1",
                    xds_port=port, control_plane_spiffe_id="spiffe://example.org/ns/agentic-system/sa/impostor")
    envoy, admin = await _start_envoy(path, tmp_path)
    try:
        for _ in range(100):
            stats = await _admin_json(admin, "/stats?format=json&filter=xds_cluster.ssl.fail_verify_san")
            values = [s.get("value", 0) for s in stats["stats"] if "fail_verify_san" in s.get("name", "")]
            if values and values[0] > 0:
                break
            await asyncio.sleep(0.05)
        assert values and values[0] > 0, stats
        assert recorder.seen == []
    finally:
        await _stop(envoy)
