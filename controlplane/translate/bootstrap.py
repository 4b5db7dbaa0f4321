"""Envoy bootstrap: the static part of a proxy's config that points it at this control plane.

Everything else (listeners, routes, clusters, secrets, policy) arrives over ADS, so the bootstrap holds only:
who the proxy is (node id/cluster), where the control plane is (``xds_cluster``), and how the xDS channel is
secured (mTLS with the proxy's own SVID, pinned to the control plane's SPIFFE ID).

The xDS client credentials are read through *file-based SDS* rather than plain ``tls_certificates``
filenames: Envoy watches the credentials directory and re-reads cert and key together whenever a file is
renamed into it (our writes are renames), so a rotated SVID is picked up without restarting Envoy. The two
small SDS files live next to the PEMs.

Everything here returns data and writes nothing: ``bootstrap_files`` says which bytes belong at which
path, and the caller (the CLI's ``bootstrap`` command; the provisioner, into a ConfigMap) writes them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from controlplane.identity.files import BUNDLE_FILE, CERT_FILE, KEY_FILE
from controlplane.identity.xds_auth import control_plane_identity
from controlplane.xds.keepalive import XDS_KEEPALIVE, KeepalivePolicy

__all__ = [
    "XDS_CLUSTER",
    "BootstrapFiles",
    "base_id_for",
    "bootstrap_files",
    "render_bootstrap",
    "render_sds_files",
    "run_command",
]

XDS_CLUSTER = "xds_cluster"
# Access log lines (one per decision) reach stdout within a second instead of Envoy's default 10 s.
ENVOY_FLAGS = ("--file-flush-interval-msec", "1000")
CLIENT_CERT_SECRET = "xds-client-cert"
TRUST_BUNDLE_SECRET = "xds-trust-bundle"
CERT_SDS_FILE = "sds-xds-client-cert.yaml"
BUNDLE_SDS_FILE = "sds-xds-trust-bundle.yaml"
BOOTSTRAP_FILE = "envoy.yaml"
RUN_FILE = "run.txt"
_SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
_BASE_ID_FIRST, _BASE_ID_SPAN = 1000, 50_000


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def base_id_for(node_id: str) -> int:
    """A stable ``--base-id`` per node id, so several Envoys on one machine do not share hot-restart memory."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return _BASE_ID_FIRST + int.from_bytes(digest[:4], "big") % _BASE_ID_SPAN


def _file_sds(name: str, path: Path) -> dict:
    """An SDS reference served from a local YAML file, re-read when its directory changes."""
    return {
        "name": name,
        "sds_config": {
            "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
            "resource_api_version": "V3",
        },
    }


def render_sds_files(*, credentials_dir: Path) -> dict[str, dict]:
    """The two SDS files (name -> content) that point Envoy at ``cert.pem``/``key.pem`` and ``bundle.pem``."""
    creds = Path(credentials_dir).absolute()
    cert = {
        "@type": _SECRET_TYPE,
        "name": CLIENT_CERT_SECRET,
        "tls_certificate": {
            "certificate_chain": {"filename": str(creds / CERT_FILE)},
            "private_key": {"filename": str(creds / KEY_FILE)},
            "watched_directory": {"path": str(creds)},
        },
    }
    bundle = {
        "@type": _SECRET_TYPE,
        "name": TRUST_BUNDLE_SECRET,
        "validation_context": {"trusted_ca": {"filename": str(creds / BUNDLE_FILE)}},
    }
    return {CERT_SDS_FILE: {"resources": [cert]}, BUNDLE_SDS_FILE: {"resources": [bundle]}}


def _upstream_tls(*, credentials_dir: Path, xds_host: str, server_spiffe_id: str, sds_dir: Path) -> dict:
    """Present our SVID; accept only a server whose URI SAN is exactly the control plane's SPIFFE ID."""
    ctx = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [_file_sds(CLIENT_CERT_SECRET, sds_dir / CERT_SDS_FILE)],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": server_spiffe_id}},
                    ],
                },
                "validation_context_sds_secret_config": _file_sds(
                    TRUST_BUNDLE_SECRET, sds_dir / BUNDLE_SDS_FILE
                ),
            },
        },
    }
    if not _is_ip(xds_host):
        ctx["sni"] = xds_host
    return {"name": "envoy.transport_sockets.tls", "typed_config": ctx}


def _xds_cluster(*, xds_host: str, xds_port: int, tls: dict, keepalive: KeepalivePolicy) -> dict:
    """The one static cluster: HTTP/2 (gRPC) to the control plane, with keepalive to notice a dead peer
    (within what the xDS server permits: ``controlplane.xds.keepalive``)."""
    endpoint = {"endpoint": {"address": {"socket_address": {"address": xds_host, "port_value": xds_port}}}}
    cluster = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if _is_ip(xds_host) else "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {"connection_keepalive": keepalive.envoy_connection_keepalive()},
                },
            },
        },
        "transport_socket": tls,
    }
    if not _is_ip(xds_host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _ads_source() -> dict:
    return {"ads": {}, "resource_api_version": "V3"}


def _dynamic_resources(*, delta: bool = False) -> dict:
    return {
        "ads_config": {
            "api_type": "DELTA_GRPC" if delta else "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            "set_node_on_first_message_only": True,
        },
        "cds_config": _ads_source(),
        "lds_config": _ads_source(),
    }


HEALTH_PATH, ADMIN_CLUSTER = "/healthz/ready", "agentic-cp-admin"


def _health_resources(*, health_port: int, admin_port: int) -> tuple[dict, dict]:
    """Istio's readiness port: the kubelet cannot reach the loopback admin, so a static listener on
    ``health_port`` answers ``/healthz/ready`` with Envoy's ``/ready`` (200 once LIVE, i.e. once its first
    xDS config arrived) and nothing else of the admin."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "health",
        "route_config": {"virtual_hosts": [{"name": "health", "domains": ["*"], "routes": [
            {"match": {"path": HEALTH_PATH}, "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    listener = {
        "name": "health",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": health_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}}
    cluster = {"name": ADMIN_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": ADMIN_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]}}
    return listener, cluster


def render_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    credentials_dir: Path,
    trust_domain: str,
    control_plane_spiffe_id: str | None = None,
    delta: bool = False,
    keepalive: KeepalivePolicy = XDS_KEEPALIVE,
    health_port: int | None = None,
    sds_dir: Path | None = None,
) -> dict:
    """An Envoy v3 bootstrap (a YAML-able dict) for one proxy. Pure: reads and writes nothing.

    ``delta=True`` makes the ADS stream incremental (``api_type: DELTA_GRPC``) instead of state of the world.
    ``keepalive`` must be the policy the xDS server runs with (the default is the server's default).
    ``sds_dir`` is where the SDS files are (default ``credentials_dir``; an injected sidecar's credentials
    are a read-only Secret mount, so its SDS files live beside the bootstrap).
    ``health_port`` adds the readiness listener an injected sidecar's probe calls (``_health_resources``).

    ``credentials_dir`` must be where ``cert.pem``, ``key.pem``, ``bundle.pem`` and the SDS files from
    ``render_sds_files`` will be; paths are made absolute because Envoy resolves them from its cwd.
    """
    creds = Path(credentials_dir).absolute()
    server_id = control_plane_spiffe_id or control_plane_identity(trust_domain)
    sds = Path(sds_dir).absolute() if sds_dir is not None else creds
    tls = _upstream_tls(credentials_dir=creds, xds_host=xds_host, server_spiffe_id=server_id, sds_dir=sds)
    static: dict = {"clusters": [_xds_cluster(xds_host=xds_host, xds_port=xds_port, tls=tls, keepalive=keepalive)]}
    if health_port is not None:
        listener, cluster = _health_resources(health_port=health_port, admin_port=admin_port)
        static = {"listeners": [listener], "clusters": [*static["clusters"], cluster]}
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": _dynamic_resources(delta=delta),
        "static_resources": static,
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
    }


def run_command(*, bootstrap_path: Path, node_id: str, envoy: str = "envoy") -> str:
    """The exact shell command that starts Envoy on ``bootstrap_path``."""
    return shlex.join([envoy, "-c", str(Path(bootstrap_path).absolute()), "--base-id", str(base_id_for(node_id)),
                       *ENVOY_FLAGS])


class _NoAliasDumper(yaml.SafeDumper):
    """Plain YAML for humans: never ``&id001`` anchors, even if a sub-dict is shared."""

    def ignore_aliases(self, data) -> bool:
        return True


def _dump(data: dict) -> bytes:
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False).encode()


@dataclass(frozen=True)
class BootstrapFiles:
    """One proxy's bootstrap as files to write: absolute path -> content. Nothing is on disk yet."""

    files: Mapping[Path, bytes]
    bootstrap_path: Path  # the ``envoy.yaml`` among ``files``
    run_path: Path  # ``run.txt``: how to start Envoy on it


def bootstrap_files(
    out_dir: Path, *, credentials_dir: Path | None = None, sds_dir: Path | None = None, envoy: str = "envoy",
    **render_args,
) -> BootstrapFiles:
    """``envoy.yaml`` and ``run.txt`` (for ``out_dir``) and the SDS files (for ``credentials_dir``, default
    ``out_dir``; or ``sds_dir``), rendered. ``render_args`` are ``render_bootstrap``'s other arguments. The PEM files
    themselves come from ``controlplane.identity.files.write_identity``."""
    out = Path(out_dir).absolute()
    creds = Path(credentials_dir).absolute() if credentials_dir is not None else out
    sds = Path(sds_dir).absolute() if sds_dir is not None else creds
    files = {sds / name: _dump(content) for name, content in render_sds_files(credentials_dir=creds).items()}
    bootstrap_path, run_path = out / BOOTSTRAP_FILE, out / RUN_FILE
    files[bootstrap_path] = _dump(render_bootstrap(credentials_dir=creds, sds_dir=sds, **render_args))
    command = run_command(bootstrap_path=bootstrap_path, node_id=render_args["node_id"], envoy=envoy)
    files[run_path] = f"# Start this proxy (base id derived from the node id):\n{command}\n".encode()
    return BootstrapFiles(files=files, bootstrap_path=bootstrap_path, run_path=run_path)
