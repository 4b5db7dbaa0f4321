"""The Kubernetes source against a fake apiserver speaking the real wire protocol."""

from __future__ import annotations

from controlplane.api.base import ResourceKey
from controlplane.kube.kinds import ALL_KINDS, NAMESPACE, SERVICE, XACCESSPOLICY, XBACKEND
from tests.kube.conftest import Consumer, obj, server_versions, wait_until
from tests.kube.fakeapi import flag

KINDS = (SERVICE, NAMESPACE, XBACKEND)


def list_requests(server, plural):
    return [
        r.query
        for r in server.requests
        if r.method == "GET" and r.path.endswith("/" + plural) and not flag(r.query, "watch")
    ]


async def test_first_changeset_is_complete_and_synced(server, make_source):
    for i in range(5):
        server.create(obj(SERVICE, f"svc-{i}", namespace=f"ns-{i % 2}"))
    server.create(obj(NAMESPACE, "ns-0"))
    server.create(obj(XBACKEND, "backend", port=80))
    async with Consumer(make_source(kinds=KINDS)) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        first = consumer.changesets[0]
        assert first.synced
        assert {r.key for r in first.upserts} == set(server_versions(server, KINDS))
        assert first.deletes == [] and first.problems == {}
        assert consumer.errors == []
    pages = list_requests(server, "services")
    assert [p.get("limit") for p in pages] == ["2", "2", "2"]  # page_size 2 over 5 services
    assert "continue" not in pages[0] and all("continue" in p for p in pages[1:])


async def test_list_items_without_kind_get_it_from_the_table(server, make_source):
    server.create(obj(SERVICE, "svc"))  # the fake, like kube-apiserver, strips kind from built-in list items
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        assert [r.api_version for r in consumer.changesets[0].upserts] == ["v1"]


async def test_adds_updates_deletes_arrive_in_order_exactly_once(server, make_source):
    server.create(obj(SERVICE, "keep"))
    async with Consumer(make_source(kinds=KINDS)) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        server.create(obj(SERVICE, "a", port=1))
        server.update(obj(SERVICE, "a", port=2))
        server.create(obj(NAMESPACE, "team"))
        server.delete(SERVICE, "default", "keep")
        server.create(obj(XBACKEND, "b"))
        server.delete(XBACKEND, "default", "b")
        await consumer.wait_for(lambda: consumer.versions() == server_versions(server, KINDS))
        assert consumer.state[ResourceKey("Service", "default", "a")].model_extra["spec"] == {"port": 2}
        assert consumer.errors == []
        assert all(not cs.synced for cs in consumer.changesets[1:])


async def test_dropped_watch_resumes_from_last_resource_version(server, make_source):
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        last = server.create(obj(SERVICE, "a"))
        await consumer.wait_for(lambda: ResourceKey("Service", "default", "a") in consumer.state)
        server.bump(5)  # others write meanwhile: the resume must still ask for the last version it saw
        lists_before = len(list_requests(server, "services"))
        watches_before = len(server.watch_requests("services"))
        server.drop_watches()
        await wait_until(lambda: len(server.watch_requests("services")) > watches_before)
        resumed = server.watch_requests("services")[watches_before]
        assert resumed["resourceVersion"] == last["metadata"]["resourceVersion"]
        assert flag(resumed, "allowWatchBookmarks") and resumed["timeoutSeconds"] == "30"
        assert len(list_requests(server, "services")) == lists_before  # resumed, not relisted
        server.create(obj(SERVICE, "b"))
        await consumer.wait_for(lambda: consumer.versions() == server_versions(server, (SERVICE,)))
        assert consumer.errors == []


async def test_bookmarks_advance_the_resource_version(server, make_source):
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        await wait_until(lambda: server.watch_count == 1)
        bookmark = server.bump(7)
        server.bookmark()
        server.compact()  # without the bookmark, resuming would now need a relist
        watches_before = len(server.watch_requests("services"))
        lists_before = len(list_requests(server, "services"))
        server.end_watches()
        await wait_until(lambda: len(server.watch_requests("services")) > watches_before)
        assert server.watch_requests("services")[watches_before]["resourceVersion"] == str(bookmark)
        assert len(list_requests(server, "services")) == lists_before


async def test_gone_event_relists_and_emits_only_the_difference(server, make_source):
    for name in ("same", "changed", "deleted"):
        server.create(obj(SERVICE, name))
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        await wait_until(lambda: server.watch_count == 1)
        server.compact(break_watches=True)  # the open watch gets an ERROR 410, and misses what follows
        server.update(obj(SERVICE, "changed", port=2))
        server.delete(SERVICE, "default", "deleted")
        server.create(obj(SERVICE, "new"))
        await consumer.wait_for(lambda: consumer.versions() == server_versions(server, (SERVICE,)))
        changes = consumer.changesets[1:]
        assert sorted(r.name for cs in changes for r in cs.upserts) == ["changed", "new"]
        assert [k.name for cs in changes for k in cs.deletes] == ["deleted"]
        assert consumer.errors == []


async def test_gone_status_on_reconnect_relists(server, make_source):
    server.gone_as_status = True
    server.create(obj(SERVICE, "old"))
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        await wait_until(lambda: server.watch_count == 1)
        lists_before = len(list_requests(server, "services"))
        server.drop_watches()
        server.delete(SERVICE, "default", "old")  # queued behind the drop: never sent on that stream
        server.create(obj(SERVICE, "fresh"))
        server.compact()
        await consumer.wait_for(lambda: consumer.versions() == server_versions(server, (SERVICE,)))
        assert len(list_requests(server, "services")) > lists_before
        assert any(r.path.endswith("/services") for r in server.requests if flag(r.query, "watch"))
        assert consumer.errors == []


async def test_forbidden_kind_is_a_problem_and_the_others_sync(server, make_source):
    server.forbid("xbackends")
    server.create(obj(SERVICE, "svc"))
    server.create(obj(XBACKEND, "backend"))
    async with Consumer(make_source(kinds=KINDS)) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        first = consumer.changesets[0]
        assert first.synced
        assert [r.name for r in first.upserts] == ["svc"]
        (problem,) = first.problems["cluster/test/xbackends"]
        assert "forbidden" in problem.message and "cannot list" in problem.message
        assert "xbackends.agentic.networking.x-k8s.io" in problem.message and "watch" in problem.message
        assert problem.kind == "XBackend"
        server.allow("xbackends")
        await consumer.wait_for(lambda: ResourceKey("XBackend", "default", "backend") in consumer.state)
        assert "cluster/test/xbackends" not in consumer.problems
        assert consumer.changesets[-1].problems.get("cluster/test/xbackends") in (None, [])
        assert any(cs.problems.get("cluster/test/xbackends") == [] for cs in consumer.changesets)


async def test_missing_crd_is_a_problem_retried_until_installed(server, make_source):
    server.uninstall("xaccesspolicies")
    server.create(obj(XACCESSPOLICY, "policy"))
    async with Consumer(make_source(kinds=(SERVICE, XACCESSPOLICY))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        (problem,) = consumer.changesets[0].problems["cluster/test/xaccesspolicies"]
        assert "CRD" in problem.message and "xaccesspolicies.agentic.networking.x-k8s.io" in problem.message
        server.install("xaccesspolicies")
        await consumer.wait_for(lambda: ResourceKey("XAccessPolicy", "default", "policy") in consumer.state)
        assert "cluster/test/xaccesspolicies" not in consumer.problems
        # A CRD that goes away takes its objects with it.
        server.uninstall("xaccesspolicies")
        server.drop_watches()
        await consumer.wait_for(lambda: "cluster/test/xaccesspolicies" in consumer.problems)
        assert ResourceKey("XAccessPolicy", "default", "policy") not in consumer.state
        assert consumer.errors == []


async def test_invalid_documents_are_problems_until_fixed(server, make_source):
    server.create(obj(SERVICE, "bad", invalid=True))
    server.create(obj(SERVICE, "good"))
    origin = "cluster/test/services/default/bad"
    async with Consumer(make_source(kinds=(SERVICE, NAMESPACE))) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        first = consumer.changesets[0]
        assert [r.name for r in first.upserts] == ["good"]
        (problem,) = first.problems[origin]
        assert problem.field == "spec.invalid" and problem.origin == origin
        server.update(obj(SERVICE, "bad", port=1))
        await consumer.wait_for(lambda: ResourceKey("Service", "default", "bad") in consumer.state)
        assert origin not in consumer.problems
        assert consumer.changesets[-1].problems == {origin: []}
        # Good turned bad: the problem is reported and the last good version stays.
        server.update(obj(SERVICE, "good", invalid=True))
        await consumer.wait_for(lambda: "cluster/test/services/default/good" in consumer.problems)
        assert consumer.state[ResourceKey("Service", "default", "good")].model_extra["spec"] == {}
        # A bad object deleted: its problem goes too.
        server.delete(SERVICE, "default", "good")
        await consumer.wait_for(lambda: "cluster/test/services/default/good" not in consumer.problems)
        assert ResourceKey("Service", "default", "good") not in consumer.state
        # Cluster-scoped origins have no namespace segment.
        server.create(obj(NAMESPACE, "broken", invalid=True))
        await consumer.wait_for(lambda: "cluster/test/namespaces/broken" in consumer.problems)
        assert consumer.errors == []


async def test_a_parse_crash_is_a_problem_not_an_outage(server, make_source):
    def explode(doc, *, origin, doc_index):
        raise NotImplementedError("models not written yet")

    server.create(obj(SERVICE, "svc"))
    async with Consumer(make_source(kinds=(SERVICE,), parse=explode)) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        (problem,) = consumer.changesets[0].problems["cluster/test/services/default/svc"]
        assert "models not written yet" in problem.message


async def test_every_kind_in_the_table_syncs(server, make_source):
    for kind in ALL_KINDS:
        server.create(obj(kind, f"one-{kind.plural}"))
    async with Consumer(make_source()) as consumer:
        await consumer.wait_for(lambda: consumer.changesets)
        assert {r.key for r in consumer.changesets[0].upserts} == set(server_versions(server, ALL_KINDS))
