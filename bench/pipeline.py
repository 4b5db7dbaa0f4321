"""The control plane's own path, in-process: cold build and one-policy edits, from files to snapshot bytes.

Cold: parse the directory, build the graph, translate and serialize every resource. Edit: rewrite
one policy file, reload that file, update the graph, translate and serialize what changed, publish the
snapshot. `bytes_per_edit_per_proxy` is what a state-of-the-world client receives for the edit: every
resource of each type whose version moved.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench import workload
from controlplane.controller import Publisher
from controlplane.graph.model import AuthorizationGraph
from controlplane.identity import xds_auth
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.sources.directory import DirectorySource
from controlplane.xds.cache import Snapshot, SnapshotCache

NODE_ID = xds_auth.node_id_for_gateway(workload.GATEWAY.namespace, workload.GATEWAY.name)


class Mesh:
    """A written mesh and the live pipeline over it (source, graph, publisher, snapshot cache)."""

    def __init__(self, root: Path, rules: int) -> None:
        self.root, self.rules = root, rules
        self.policies, self.backends = workload.counts(rules)
        workload.write_mesh(root, rules)
        self.source = DirectorySource(root, settle_ms=0)
        self.graph = AuthorizationGraph(trust_domain="cluster.local")
        self.cache = SnapshotCache()
        ca = CertificateAuthority.create(trust_domain="cluster.local")
        self.publisher = Publisher(graph=self.graph, cache=self.cache, certificates=CertificateManager(ca))
        self.revision = 0
        self.timings: dict[str, float] = {}

    def cold_build(self) -> dict:
        started = time.perf_counter()
        change = self.source.load()
        parsed = time.perf_counter()
        self.graph.apply(change)
        graphed = time.perf_counter()
        self.publisher.publish()
        done = time.perf_counter()
        return {"parse_s": round(parsed - started, 4), "graph_s": round(graphed - parsed, 4),
                "translate_serialize_s": round(done - graphed, 4), "total_s": round(done - started, 4)}

    def edit(self, index: int = 0) -> dict:
        """Change one tool name in policy `index` and publish; the timing of each stage, and the bytes."""
        before = self.snapshot()
        self.revision += 1
        path = workload.write_policy(self.root, index, self.backends, revision=self.revision)
        started = time.perf_counter()
        change = self.source.reload([path])
        parsed = time.perf_counter()
        changed = self.graph.apply(change)
        graphed = time.perf_counter()
        self.publisher.publish(changed)
        done = time.perf_counter()
        return {"reload_s": parsed - started, "graph_s": graphed - parsed, "publish_s": done - graphed,
                "total_s": done - started, "bytes_per_proxy": sotw_bytes(before, self.snapshot())}

    def snapshot(self) -> Snapshot:
        return self.cache.get(NODE_ID)


def sotw_bytes(before: Snapshot, after: Snapshot) -> int:
    """Bytes of resources a SotW client is sent when `before` becomes `after` (whole types that moved)."""
    return sum(sum(len(r.body) for r in after.resources(t).values())
               for t in after.type_urls if before.version(t) != after.version(t))


def run(rules: int, edits: int = 5) -> dict:
    """One size, measured in this process (run it in a fresh process for an honest peak RSS)."""
    with tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(Path(tmp) / "mesh", rules)
        cold = mesh.cold_build()
        samples = [mesh.edit(i % mesh.policies) for i in range(edits)]
        snapshot = mesh.snapshot()
        return {"rules": rules, "policies": mesh.policies, "backends": mesh.backends,
                "config_bytes": {t.rpartition(".")[2]: sum(len(r.body) for r in snapshot.resources(t).values())
                                 for t in snapshot.type_urls},
                "cold_build": cold,
                "edit_median": {k: round(statistics.median(s[k] for s in samples), 5)
                                for k in ("reload_s", "graph_s", "publish_s", "total_s")},
                "bytes_per_edit_per_proxy": statistics.median(s["bytes_per_proxy"] for s in samples),
                "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]))))
