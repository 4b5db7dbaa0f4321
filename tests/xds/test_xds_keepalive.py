"""The xDS server's HTTP/2 ping policy accepts the keepalive its own bootstraps configure.

Before they shared one KeepalivePolicy, Envoy pinged every 30 s while gRPC's default server policy
allows one ping per 5 min without data: after two strikes the server sent GOAWAY "too_many_pings"
and every proxy reconnected (and took a full push) about every 127 s. The fast tests run the same
relation scaled down to 1 s pings; one slow test holds a real default-policy stream for minutes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.files import atomic_write, write_identity
from controlplane.identity.xds_auth import (
    expected_spiffe_id,
    issue_proxy_identity,
    issue_server_identity,
    server_credentials,
)
from controlplane.translate.bootstrap import bootstrap_files, render_bootstrap
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.keepalive import XDS_KEEPALIVE, KeepalivePolicy
from controlplane.xds.server import XdsServer, trust_node_id
from tests.support.envoy import EnvoyProcess, free_port, write_config

TD = "example.org"
NODE = "gateway~ns~gw"
FAST = KeepalivePolicy(interval_s=1, timeout_s=1, server_interval_s=2, server_timeout_s=2)


def _options(policy: KeepalivePolicy) -> dict[str, int]:
    return dict(policy.server_options())


def test_server_tolerates_the_bootstrap_ping_interval(tmp_path):
    """Unit-level: the interval in a generated bootstrap is at least the server's minimum."""
    boot = render_bootstrap(node_id=NODE, node_cluster="gw", xds_host="127.0.0.1", xds_port=1, admin_port=2,
                            credentials_dir=tmp_path, trust_domain=TD)
    [cluster] = boot["static_resources"]["clusters"]
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    keepalive = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    interval_ms = float(keepalive["interval"].rstrip("s")) * 1000
    server = _options(XDS_KEEPALIVE)
    # Envoy jitters the interval by up to 15% either way; the server must still count none as a strike.
    assert interval_ms * 0.85 > server["grpc.http2.min_ping_interval_without_data_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.keepalive_time_ms"] >= 10_000  # the server's own pings are not a flood either


async def _serve_envoy(tmp_path: Path, *, server_policy: KeepalivePolicy, envoy_policy: KeepalivePolicy,
                       seconds: float) -> tuple[int, int, int]:
    """Envoy from a generated mTLS bootstrap, connected for ``seconds``; returns (upstream_cx_total,
    control_plane.connected_state, streams the server opened)."""
    ca = CertificateAuthority.create(trust_domain=TD)
    creds = tmp_path / "creds"
    write_identity(creds, issue_proxy_identity(ca, expected_spiffe_id(TD, NODE), role="gateway"), ca.bundle_pem)
    server = XdsServer(cache=SnapshotCache(), authorize=trust_node_id, keepalive=server_policy)
    port = await server.start("127.0.0.1:0",
                              server_credentials(ca, server_identity=issue_server_identity(ca)))
    bootstrap = bootstrap_files(tmp_path / "out", credentials_dir=creds, node_id=NODE, node_cluster="gw",
                                xds_host="127.0.0.1", xds_port=port, admin_port=free_port(), trust_domain=TD,
                                keepalive=envoy_policy)
    for file, content in bootstrap.files.items():
        atomic_write(file, content)
    path = bootstrap.bootstrap_path
    try:
        with EnvoyProcess.start(write_config(yaml.safe_load(path.read_text()), tmp_path / "bootstrap.json"), log_level="warning") as envoy:
            await envoy.wait_until_async(lambda: _connected(envoy), "connected to the control plane")
            started = time.monotonic()
            while time.monotonic() - started < seconds and envoy.proc.poll() is None:
                await asyncio.sleep(1)
            cx = envoy.stat("cluster.xds_cluster.upstream_cx_total")
            state = envoy.stat("control_plane.connected_state")
            opened = next(server._stream_ids) - 1
            print(f"\nkeepalive report: {seconds:.0f}s, envoy pings every {envoy_policy.interval_s:g}s, "
                  f"server minimum {server_policy.min_client_ping_interval_ms} ms: upstream_cx_total={cx}, "
                  f"connected_state={state}, streams opened={opened}")
            return cx, state, opened
    finally:
        await server.stop(None)


def _connected(envoy: EnvoyProcess) -> bool:
    return envoy.stat("control_plane.connected_state") == 1


@pytest.mark.slow
async def test_fast_pings_within_the_policy_never_reconnect(tmp_path):
    assert await _serve_envoy(tmp_path, server_policy=FAST, envoy_policy=FAST, seconds=12) == (1, 1, 1)


@pytest.mark.slow
async def test_fast_pings_beyond_the_server_policy_are_struck_out(tmp_path):
    """The control: the same Envoy against a server whose policy allows only 5-minute pings (gRPC's
    default, what the server ran before) is sent GOAWAY and reconnects within seconds."""
    strict = KeepalivePolicy(interval_s=600)
    cx, _, opened = await _serve_envoy(tmp_path, server_policy=strict, envoy_policy=FAST, seconds=12)
    assert cx >= 2 and opened >= 2


@pytest.mark.slow
async def test_default_policy_keeps_one_stream_for_minutes(tmp_path):
    """The real policy, real Envoy, 200 s: longer than the ~127 s after which the old server struck out."""
    assert await _serve_envoy(tmp_path, server_policy=XDS_KEEPALIVE, envoy_policy=XDS_KEEPALIVE,
                              seconds=200) == (1, 1, 1)

