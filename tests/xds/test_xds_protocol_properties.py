"""Property tests of the state machine: whatever the client and the snapshots do, a client that
ACKs what it gets ends up holding exactly the snapshot's view of what it subscribed to, and no
response ever names a resource twice."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from controlplane.xds.cache import Snapshot
from controlplane.xds.protocol import WILDCARD_TYPES, Response
from controlplane.xds.resources import CLUSTER, ENDPOINT, ROUTE
from tests.xds.xds_helpers import res
from tests.xds.xds_sotw import Stream

TYPES = (CLUSTER, ENDPOINT, ROUTE)  # one complete type, two partial ones, and the CDS->EDS coupling
NAMES = ("A", "B")

worlds = st.dictionaries(
    st.sampled_from(TYPES), st.dictionaries(st.sampled_from(NAMES), st.sampled_from("12"))
)
subscriptions = st.sampled_from([[], ["A"], ["B"], ["A", "B"], ["*"], ["*", "A"], ["A", "A"]])
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("request"), st.sampled_from(TYPES), subscriptions, st.sampled_from([False, False, True])
        ),
        st.tuples(st.just("snapshot"), worlds),
    ),
    max_size=15,
)


def build(world: dict) -> Snapshot:
    return Snapshot(res(t, n, v) for t, names in world.items() for n, v in names.items())


class Client:
    """What an Envoy would hold: complete types replaced per response, others upserted."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, str]] = {}
        self.names: dict[str, list[str]] = {}

    def forget_unwanted(self, type_url: str, wants) -> None:
        """Envoy drops what it no longer subscribes to; a resubscription must bring it back (R15)."""
        held = self.held.get(type_url, {})
        for name in [n for n in held if not wants(n)]:
            del held[name]

    def apply(self, responses: list[Response]) -> None:
        for response in responses:
            names = [r.name for r in response.resources]
            assert len(names) == len(set(names)), "duplicate name in one response"
            view = {r.name: r.version for r in response.resources}
            if response.type_url in WILDCARD_TYPES:
                self.held[response.type_url] = view
            else:
                self.held.setdefault(response.type_url, {}).update(view)


RESUBSCRIBE = [
    ("snapshot", {ROUTE: {"A": "1"}, CLUSTER: {"A": "1"}}),
    ("request", ROUTE, ["A"], False),
    ("request", ROUTE, ["B"], False),
    ("request", ROUTE, ["A"], False),
    ("request", CLUSTER, ["A"], False),
    ("request", CLUSTER, [], False),
    ("request", CLUSTER, ["A"], False),
]
NEW_NAME = [
    ("snapshot", {ENDPOINT: {"A": "1", "B": "2"}}),
    ("request", ENDPOINT, ["A"], False),
    ("request", ENDPOINT, ["A", "B"], True),
    ("request", ENDPOINT, ["A", "B"], False),
]


@settings(max_examples=400, deadline=None)
@given(ops, st.none() | worlds)
@example(RESUBSCRIBE, None)
@example(NEW_NAME, None)
def test_an_acking_client_converges_to_the_snapshot(operations, final_world):
    stream, client = Stream(Snapshot()), Client()
    for op in operations:
        if op[0] == "snapshot":
            client.apply(stream.set_snapshot(build(op[1])))
            continue
        _, type_url, names, stale = op
        client.names[type_url] = names
        nonce = (
            "0"
            if stale and stream.states.get(type_url, None) and stream.states[type_url].nonce_sent
            else None
        )
        responses = stream.request(type_url, names, nonce=nonce)
        client.forget_unwanted(type_url, stream.states[type_url].subscription.wants)
        client.apply(responses)
    snapshot = stream.snapshot if final_world is None else build(final_world)
    client.apply(stream.set_snapshot(snapshot))
    for _ in range(3):  # the client ACKs with its current names until the server is quiet
        for type_url, names in client.names.items():
            client.apply(stream.request(type_url, names))
            client.forget_unwanted(type_url, stream.states[type_url].subscription.wants)
    for type_url, state in stream.states.items():
        sub = state.subscription
        expected = {n: r.version for n, r in snapshot.resources(type_url).items() if sub.wants(n)}
        held = {n: v for n, v in client.held.get(type_url, {}).items() if sub.wants(n)}
        if type_url in WILDCARD_TYPES:
            assert held == expected
        else:  # RDS/EDS deletion is implicit (R23): the client may still hold deleted names
            assert {n: v for n, v in held.items() if n in expected} == expected
