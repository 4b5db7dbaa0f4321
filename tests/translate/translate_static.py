"""Turn one Gateway's xDS resources into a static Envoy bootstrap, so `envoy --mode validate` can check them.

RDS references become inline route configs, EDS clusters become STATIC clusters with their
ClusterLoadAssignment inlined, and SDS secret references point at static secrets of the same name.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

from controlplane.xds import resources as types
from controlplane.xds.resources import Resource
from tests.support.envoy import validate, write_config


def static_bootstrap(resources: list[Resource]) -> dict:
    by_type: dict[str, dict[str, dict]] = {}
    for r in resources:
        payload = r.payload if isinstance(r.payload, dict) else r.payload.to_dict()
        by_type.setdefault(r.type_url, {})[r.name] = copy.deepcopy(payload)
    routes = by_type.get(types.ROUTE, {})
    listeners = [_inline_rds(listener, routes) for listener in by_type.get(types.LISTENER, {}).values()]
    cla = by_type.get(types.ENDPOINT, {})
    clusters = [_static_cluster(c, cla) for c in by_type.get(types.CLUSTER, {}).values()]
    secrets = list(by_type.get(types.SECRET, {}).values())
    return {"static_resources": {"listeners": listeners, "clusters": clusters, "secrets": secrets},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}}


def _inline_rds(listener: dict, routes: dict) -> dict:
    for chain in listener.get("filterChains", []):
        for f in chain["filters"]:
            hcm = f["typedConfig"]
            if "rds" in hcm:
                hcm["routeConfig"] = routes[hcm.pop("rds")["routeConfigName"]]
        _static_secret_refs(chain)
    return listener


def _static_secret_refs(holder: dict) -> None:
    """SDS references of a listener's or cluster's TLS context -> the static secrets of the same name."""
    tls = holder.get("transportSocket", {}).get("typedConfig", {}).get("commonTlsContext", {})
    for ref in tls.get("tlsCertificateSdsSecretConfigs", []):
        ref.pop("sdsConfig", None)
    validation = tls.get("combinedValidationContext", tls)
    if "validationContextSdsSecretConfig" in validation:
        validation["validationContextSdsSecretConfig"].pop("sdsConfig", None)


def _static_cluster(cluster: dict, cla: dict) -> dict:
    if cluster.get("type") == "EDS":
        cluster = {k: v for k, v in cluster.items() if k != "edsClusterConfig"}
        cluster["type"] = "STATIC"
        cluster["loadAssignment"] = cla[cluster["name"]]
    _static_secret_refs(cluster)
    _credential_refs(cluster, drop_source=True)  # an egress credential's SDS reference -> the static secret
    return cluster


def _credential_refs(value, *, drop_source: bool = False) -> list[str]:
    """The names of generic credentials (the egress's injected credentials) a resource refers to over SDS."""
    found: list[str] = []
    if isinstance(value, dict):
        ref = value.get("credential")
        if isinstance(ref, dict) and "name" in ref and "sdsConfig" in ref:
            found.append(ref["name"])
            if drop_source:
                ref.pop("sdsConfig")
        for item in value.values():
            found += _credential_refs(item, drop_source=drop_source)
    elif isinstance(value, list):
        for item in value:
            found += _credential_refs(item, drop_source=drop_source)
    return found


def placeholder_credentials(resources: list[Resource]) -> list[Resource]:
    """A stand-in generic secret for every credential the resources name: serve sends the real value, the
    golden outputs never hold it."""
    from controlplane.identity.sds import credential_secret

    names = sorted({n for r in resources if r.type_url == types.CLUSTER for n in _credential_refs(
        r.payload if isinstance(r.payload, dict) else r.payload.to_dict())})
    return [Resource(types.SECRET, n, credential_secret(n, b"placeholder").to_dict()) for n in names]


def envoy_validate(bootstrap: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return validate(write_config(bootstrap, tmp_path / "static.json"))
