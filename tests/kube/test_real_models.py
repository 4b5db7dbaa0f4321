"""The source with the project's real `parse_object` (its default): the quickstart manifests, served by the
fake apiserver, come out as the same resources the directory source reads from the files."""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.api.registry import parse_object
from controlplane.kube.kinds import ALL_KINDS
from tests.kube.conftest import Consumer

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
WATCHED = {(k.api_version, k.kind) for k in ALL_KINDS}


def quickstart_objects() -> list[dict]:
    docs = [d for f in sorted(QUICKSTART.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return [d for d in docs if (d.get("apiVersion"), d.get("kind")) in WATCHED]


async def test_quickstart_through_the_cluster_source(server, make_source):
    objects = quickstart_objects()
    assert any(o["kind"] == "XAccessPolicy" for o in objects)
    for o in objects:
        server.create(o)
    server.create(
        {
            "apiVersion": "agentic.networking.x-k8s.io/v1alpha1",
            "kind": "XAccessPolicy",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"bogus": 1},
        }
    )
    async with Consumer(make_source(parse=parse_object)) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        first = consumer.changesets[0]
        expected = {parse_object(o).key for o in objects}
        assert {r.key for r in first.upserts} == expected
        problems = first.problems["cluster/test/xaccesspolicies/default/bad"]
        assert problems and all(p.origin == "cluster/test/xaccesspolicies/default/bad" for p in problems)
        assert all(p.kind == "XAccessPolicy" and p.name == "bad" for p in problems)
