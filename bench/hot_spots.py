"""The profile's hot spots (issue 10), the code before the fix against the code now, timed in one run.

The "before" side is the old code, kept here verbatim as a reference only (the package no longer has
it): a fingerprint of the whole RouteConfiguration's JSON and then each part's, a hash of the whole
body per resource, a DiscoveryResponse encoded whole for every stream, and a directory reload that
looked at every object for every file.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import workload
from bench.pipeline import Mesh
from controlplane.graph.view import gateway_view
from controlplane.sources.directory import DirectorySource
from controlplane.translate.roles.gateway import resources_for
from controlplane.xds import resources as types
from controlplane.xds import serialize
from controlplane.xds.protocol import Response
from controlplane.xds.resources import Resource, XdsResource
from controlplane.xds.shared_responses import SharedResponses
from controlplane.xds.wire import discovery_response_tail, encode_discovery_response


def timed(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def compare(before, after, **extra) -> dict:
    old, new = timed(before), timed(after)
    return {"before_s": round(old, 6), "after_s": round(new, 6), "speedup": round(old / new, 1) if new else None,
            **extra}


def legacy_route_fingerprints(resource: Resource) -> None:
    """Before: the whole RouteConfiguration's JSON hashed, then every part's again."""
    serialize._fingerprint(resource)
    for vhost in resource.payload.get("virtualHosts", []):
        serialize._fingerprint(Resource(serialize.VIRTUAL_HOST_TYPE, "", {k: v for k, v in vhost.items()
                                                                          if k != "routes"}))
        for route in vhost.get("routes", []):
            serialize._fingerprint(Resource(serialize.ROUTE_TYPE, "", route))


def legacy_xds_resource(type_url: str, name: str, body: bytes) -> None:
    """Before: every resource's version hashed from its whole body."""
    hashlib.sha256(type_url.encode() + b"\0" + body).hexdigest()
    XdsResource(type_url, name, body, version="-")


class LegacyDirectorySource(DirectorySource):
    """Before: for each file, a pass over every object the last view held."""

    def _previous_by_origin(self):
        return {}

    def _still_in_force(self, path, previous, live, now):
        origin = self._origin(path)
        previous = [(key, where) for key, where in self.origins.items() if where[0] == origin and key in self._view]
        return super()._still_in_force(path, previous, live, now)


def route_configuration(mesh: Mesh) -> Resource:
    view = gateway_view(mesh.graph, workload.GATEWAY)
    return next(r for r in resources_for(view, secrets=[]) if r.type_url == types.ROUTE)


def bench_serialize(mesh: Mesh) -> dict:
    resource = route_configuration(mesh)
    built = mesh.snapshot().resources(types.ROUTE)[resource.name]
    return {"fingerprint": compare(lambda: legacy_route_fingerprints(resource),
                                   lambda: serialize._RouteConfigurationPlan(resource),
                                   route_configuration_bytes=len(built.body)),
            "resource_version": compare(lambda: legacy_xds_resource(types.ROUTE, built.name, built.body),
                                        lambda: XdsResource(types.ROUTE, built.name, built.body, version="-"))}


def bench_fanout_encoding(mesh: Mesh, streams: int) -> dict:
    built = tuple(mesh.snapshot().resources(types.ROUTE).values())
    response = Response(types.ROUTE, "v1", built)

    def per_stream():
        for i in range(streams):
            encode_discovery_response(version_info="v1", resources=[r.any_bytes for r in built], type_url=types.ROUTE,
                                      nonce=f"n{i}", control_plane_id="cp")

    def shared():
        encodings = SharedResponses()
        for i in range(streams):
            encodings.head(response) + discovery_response_tail(nonce=f"n{i}", control_plane_id="cp")

    return compare(per_stream, shared, streams=streams)


def bench_directory_reload(rules: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workload.write_mesh(root, rules)
        _, backends = workload.counts(rules)
        path = workload.write_policy(root, 0, backends, revision=1)
        old, new = LegacyDirectorySource(root, settle_ms=0), DirectorySource(root, settle_ms=0)
        old.load(), new.load()
        return compare(lambda: old.reload([path]), lambda: new.reload([path]), rules=rules, what="one-file reload")


def run(rules: int = 300, streams: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(Path(tmp) / "mesh", rules)
        mesh.cold_build()
        return {"rules": rules, **bench_serialize(mesh), "fanout_encoding": bench_fanout_encoding(mesh, streams),
                "directory_reload": [bench_directory_reload(rules), bench_directory_reload(rules * 10)]}


if __name__ == "__main__":
    import sys

    print(json.dumps(run(*(int(a) for a in sys.argv[1:])), indent=2))
