"""Property: whatever happens on the wire, the consumer ends up with exactly the server's state.

Random creates, updates and deletes are interleaved with compactions (a relist), broken watches
(410 as an ERROR event, or as the HTTP status on reconnect), dropped connections (resume), clean
stream ends and bookmarks. Once quiet, the state rebuilt from the ChangeSets equals the server's,
and on the way no upsert was stale or repeated and no delete named something not held.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.kube.client import KubeApi
from controlplane.kube.kinds import NAMESPACE, SERVICE
from controlplane.sources.kubernetes import KubernetesSource
from tests.kube.conftest import FAST, Consumer, fake_parse, obj, server_versions
from tests.kube.fakeapi import FakeApiServer

KINDS = (SERVICE, NAMESPACE)
targets = st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b", "c", "d", "e"]))
operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["put", "delete"]), targets),
        st.tuples(st.sampled_from(["compact", "compact+break", "drop", "end", "bookmark"]), st.none()),
        st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.002, 0.02])),
    ),
    max_size=40,
)


async def scenario(initial: list[tuple], steps: list[tuple], *, gone_as_status: bool) -> None:
    server = FakeApiServer(history=8)  # small: the history overflows by itself too
    server.gone_as_status = gone_as_status
    await server.start()
    counter = 0

    def put(kind, name):
        nonlocal counter
        counter += 1
        server.apply(obj(kind, name, value=counter))

    for kind, name in initial:
        put(kind, name)
    source = KubernetesSource(
        api_client_factory=lambda: KubeApi(host=server.url),
        kinds=KINDS,
        parse=fake_parse,
        name="prop",
        backoff=FAST,
        page_size=2,
        timeout_seconds=30,
        batch_window=0.005,
    )
    try:
        async with Consumer(source) as consumer:
            await consumer.wait_for(lambda: consumer.changesets)
            for action, argument in steps:
                if action == "put":
                    put(*argument)
                elif action == "delete":
                    kind, name = argument
                    if server.get(kind, "default", name) is not None:
                        server.delete(kind, "default", name)
                elif action == "compact":
                    server.compact()
                elif action == "compact+break":
                    server.compact(break_watches=True)
                elif action == "drop":
                    server.drop_watches()
                elif action == "end":
                    server.end_watches()
                elif action == "bookmark":
                    server.bookmark()
                else:
                    await asyncio.sleep(argument)
            await consumer.wait_for(lambda: consumer.versions() == server_versions(server, KINDS), timeout=15)
            assert consumer.errors == []
            assert consumer.problems == {}
    finally:
        await server.stop()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.lists(targets, max_size=6), steps=operations, gone_as_status=st.booleans())
def test_consumer_state_converges_to_server_state(initial, steps, gone_as_status):
    asyncio.run(scenario(initial, steps, gone_as_status=gone_as_status))
