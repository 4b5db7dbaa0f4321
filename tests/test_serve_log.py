"""What serve logs about its world: counts at the first read, the objects of each change, what it published."""

from __future__ import annotations

import logging

from controlplane import serve_log
from controlplane.api.base import Problem
from controlplane.api.changes import ChangeSet
from controlplane.controller import ControlPlane, Settings
from controlplane.sources.directory import DirectorySource
from controlplane.xds import resources as types
from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import Resource
from controlplane.xds.serialize import to_xds_resource
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"


def test_the_first_read_is_counted_per_kind():
    change = DirectorySource(QUICKSTART).load()
    line = serve_log.loaded(change)
    assert line.startswith("loaded 12 objects: ") and "XAccessPolicy 2" in line and line.endswith("; no problems")
    change.problems["bad.yaml"] = [Problem("bad.yaml", 0, "XBackend", "ns", "b", "spec", "wrong")]
    assert serve_log.loaded(change).endswith("; 1 problems in 1 files (agentic-cp analyze lists them)")


def test_a_change_names_its_objects_and_counts_past_a_few():
    objects = DirectorySource(QUICKSTART).load().upserts
    line = serve_log.changed(ChangeSet(upserts=objects[:7], deletes=[objects[8].key]))
    assert line.startswith("change: upserted 7 (") and line.endswith(f", and 2 more); deleted 1 ({objects[8].key})")
    assert serve_log.changed(ChangeSet()) is None


def _snapshot(cluster_name: str) -> Snapshot:
    cluster = {"name": cluster_name, "type": "EDS", "edsClusterConfig": {"edsConfig": {"ads": {}}}}
    return Snapshot([to_xds_resource(Resource(types.CLUSTER, cluster_name, cluster))])


def test_published_names_each_proxy_and_the_versions_it_now_gets():
    before, after = {"gw~a": _snapshot("one"), "gw~gone": _snapshot("x")}, {"gw~a": _snapshot("two")}
    lines = serve_log.published(before, after)
    assert lines == [f"published to gw~a: CDS {after['gw~a'].version(types.CLUSTER)}",
                     "published to gw~gone: removed (its Gateway is gone or no longer ours)"]
    assert serve_log.published(after, after) == []


def test_the_controller_logs_the_first_read_and_later_changes(tmp_path, caplog):
    plane = ControlPlane(source=None, settings=Settings(state_dir=tmp_path, trust_domain="cluster.local",
                                                        xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))
    caplog.set_level(logging.INFO, logger="controlplane.controller")
    first = DirectorySource(QUICKSTART).load()
    plane.apply(first, publish=False)
    plane.apply(ChangeSet(deletes=[first.upserts[0].key]), publish=False)
    messages = [r.getMessage() for r in caplog.records if r.name == "controlplane.controller"]
    assert messages == [serve_log.loaded(first), f"change: deleted 1 ({first.upserts[0].key})"]
