"""Property tests of the delta state machine: random snapshot changes and subscription changes,
with a model client that applies every response and ACKs it (or NACKs one resource version).

Invariants after every step:
- every wanted resource that exists is held by the client at its current version (convergence),
  unless that exact version was NACKed (parked, R8);
- for LDS/CDS (deletions announced), the client holds nothing that does not exist or is not wanted;
- no response names a resource twice, or both upserts and removes it (R21);
- once converged, a repeated push of the same snapshot sends nothing (R14).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.xds.cache import Snapshot
from controlplane.xds.delta import DEFAULT_POLICIES
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.xds_delta_sim import DeltaSim
from tests.xds.xds_helpers import res

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
NAMES = ("A", "B", "C", "D")

worlds = st.dictionaries(
    st.sampled_from(TYPES), st.dictionaries(st.sampled_from(NAMES), st.sampled_from("123"), max_size=4)
)
ops = st.one_of(
    st.tuples(st.just("world"), worlds),
    st.tuples(
        st.just("sub"),
        st.sampled_from(TYPES),
        st.lists(st.sampled_from((*NAMES, "*")), max_size=2),
        st.lists(st.sampled_from((*NAMES, "*")), max_size=2),
    ),
    st.tuples(st.just("nack"), st.sampled_from(TYPES)),
)


def build(world: dict) -> Snapshot:
    return Snapshot(res(t, n, v) for t, names in world.items() for n, v in names.items())


class ModelClient:
    def __init__(self) -> None:
        self.held: dict[str, dict[str, str]] = {t: {} for t in TYPES}
        self.nack_next: set[str] = set()

    def apply(self, sim: DeltaSim, responses) -> None:
        for response in responses:
            names = [r.name for r in response.resources]
            assert len(names) == len(set(names)) and not set(names) & set(response.removed)
        for response in responses:
            held = self.held[response.type_url]
            if response.type_url in self.nack_next and response.resources:
                self.nack_next.discard(response.type_url)
                self.apply(sim, sim.nack(response.type_url, nonce=_nonce_of(sim, response)))
                continue
            held.update({r.name: r.version for r in response.resources})
            for name in response.removed:
                held.pop(name, None)
            self.apply(sim, sim.ack(response.type_url, nonce=_nonce_of(sim, response)))


def _nonce_of(sim: DeltaSim, response) -> str:
    state = sim.states[response.type_url]
    for nonce, pending in state.pending.items():
        if (
            dict(pending.versions) == {r.name: r.version for r in response.resources}
            and pending.removed == response.removed
        ):
            return nonce
    return "unknown"


@settings(max_examples=150, deadline=None)
@given(first=worlds, steps=st.lists(ops, max_size=12))
def test_delta_converges_and_stays_quiet(first, steps):
    sim, client = DeltaSim(build(first)), ModelClient()
    for type_url in TYPES:
        client.apply(sim, sim.request(type_url, ["*"] if type_url in (CLUSTER, LISTENER) else ["A", "B"]))
    for op in steps:
        if op[0] == "world":
            client.apply(sim, sim.set_snapshot(build(op[1])))
        elif op[0] == "sub":
            _, type_url, subscribe, unsubscribe = op
            for name in unsubscribe:  # a client forgets what it unsubscribes from, as it asks
                if name != "*":
                    client.held[type_url].pop(name, None)
            if "*" in unsubscribe:  # ... and, leaving the wildcard, what only the wildcard gave it
                explicit = (sim.states[type_url].subscription.names | set(subscribe)) - set(unsubscribe)
                for name in [n for n in client.held[type_url] if n not in explicit]:
                    del client.held[type_url][name]
            client.apply(sim, sim.request(type_url, subscribe, unsubscribe))
        else:
            client.nack_next.add(op[1])
        check(sim, client)
    client.nack_next.clear()
    assert sim.set_snapshot(sim.snapshot) == []


def check(sim: DeltaSim, client: ModelClient) -> None:
    for type_url, state in sim.states.items():
        resources = sim.snapshot.resources(type_url)
        held = client.held[type_url]
        for name, resource in resources.items():
            if state.subscription.wants(name) and state.rejected.get(name) != resource.version:
                assert held.get(name) == resource.version, (type_url, name, held, state)
        if DEFAULT_POLICIES[type_url].announce_deleted:
            stray = {n for n in held if n not in resources and state.subscription.wants(n)}
            assert not stray, (type_url, stray)
