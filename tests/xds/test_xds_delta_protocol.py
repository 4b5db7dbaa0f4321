"""Table tests of the delta state machine (controlplane/xds/delta.py), one rule at a time.

Each test drives ``DeltaSim`` (a synchronous stand-in for the delta stream) and compares
``summary(responses)``: [(type, upserted names, removed names)] in send order.
"""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.core.v3 import ControlPlane
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryResponse, Resource
from envoy_data_plane.google.protobuf import Any as AnyMessage

from controlplane.xds.delta import (
    ANNOUNCE_ALL,
    DEFAULT_POLICIES,
    KEEP_ON_DELETE,
    MAX_PENDING,
    DeltaKind,
    DeltaResponse,
    DeltaTypeState,
    RemovalPolicy,
)
from controlplane.xds.protocol import SyncStatus
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from controlplane.xds.wire import encode_delta_discovery_response, encode_delta_resource
from tests.xds.xds_delta_sim import DeltaSim, summary
from tests.xds.xds_helpers import res, snapshot_of

ALL_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)


def sub(sim: DeltaSim, type_url: str) -> tuple[bool, list[str]]:
    s = sim.states[type_url].subscription
    return s.wildcard, sorted(s.names)


# --- R17: wildcard and legacy wildcard, the spec's delta sequence verbatim -----------------------------


def test_spec_delta_wildcard_sequence():
    sim = DeltaSim(snapshot_of({CLUSTER: "A,B"}))
    assert summary(sim.request(CLUSTER)) == [("cds", ["A", "B"], [])]  # {} -> wildcard
    assert sub(sim, CLUSTER) == (True, [])
    sim.ack(CLUSTER)
    sim.request(CLUSTER, ["A"])  # continuing "*", adding A
    assert sub(sim, CLUSTER) == (True, ["A"])
    sim.ack(CLUSTER)
    sim.request(CLUSTER, unsubscribe=["*"])  # unsubscribing "*", keeping A
    assert sub(sim, CLUSTER) == (False, ["A"])
    sim.request(CLUSTER, unsubscribe=["A"])  # nothing subscribed: NOT the legacy wildcard
    assert sub(sim, CLUSTER) == (False, [])
    assert sim.set_snapshot(snapshot_of({CLUSTER: "A,B,C"})) == []


@pytest.mark.parametrize(
    ("type_url", "wildcard"),
    [(LISTENER, True), (CLUSTER, True), (ENDPOINT, False), (ROUTE, False), (SECRET, False)],
)
def test_legacy_wildcard_only_for_lds_and_cds(type_url, wildcard):
    sim = DeltaSim(snapshot_of({type_url: "A,B"}))
    responses = sim.request(type_url)
    assert sub(sim, type_url) == (wildcard, [])
    assert summary(responses) == ([(summary_type(type_url), ["A", "B"], [])] if wildcard else [])


def summary_type(type_url: str) -> str:
    return {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", SECRET: "sds"}[type_url]


def test_first_request_naming_resources_is_not_the_legacy_wildcard():
    sim = DeltaSim(snapshot_of({LISTENER: "A,B"}))
    assert summary(sim.request(LISTENER, ["A"])) == [("lds", ["A"], [])]
    assert sub(sim, LISTENER) == (False, ["A"])


def test_subscribe_and_unsubscribe_star_in_one_request_opts_out_of_the_implicit_wildcard():
    sim = DeltaSim(snapshot_of({CLUSTER: "A,B"}))
    assert sim.request(CLUSTER, ["*"], ["*"]) == []  # Istio's on-demand clients do this
    assert sub(sim, CLUSTER) == (False, [])
    assert summary(sim.request(CLUSTER, ["B"])) == [("cds", ["B"], [])]


def test_explicit_star_works_for_any_type():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B"}))
    assert summary(sim.request(ROUTE, ["*"])) == [("rds", ["A", "B"], [])]


def test_wildcard_with_nothing_to_send_answers_once_with_an_empty_response():
    sim = DeltaSim(snapshot_of({ROUTE: "R"}))
    assert summary(sim.request(CLUSTER)) == [("cds", [], [])]  # the client's initial fetch completes
    assert sim.ack(CLUSTER) == []
    assert sim.set_snapshot(snapshot_of({ROUTE: "R"}).with_resources(res(ROUTE, "R", "2"))) == []


# --- R10, R11: nonces ------------------------------------------------------------------------------


def test_a_spontaneous_request_is_never_an_ack():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B"}))
    sim.request(ROUTE, ["A"])
    assert sim.states[ROUTE].status is SyncStatus.STALE
    sim.request(ROUTE, ["B"])  # no nonce: a subscription change, not an answer to the response
    assert sim.kinds == [DeltaKind.INITIAL, DeltaKind.SUBSCRIBE]
    assert sim.states[ROUTE].acked == {}
    assert sim.states[ROUTE].status is SyncStatus.STALE
    sim.ack(ROUTE)
    assert sim.states[ROUTE].status is SyncStatus.SYNCED
    assert sim.states[ROUTE].acked.keys() == {"A", "B"}


def test_a_stale_nonce_does_not_reject_a_subscription_change():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B,C"}))
    sim.request(ROUTE, ["A"])
    first = sim.last_nonce[ROUTE]
    sim.request(ROUTE, ["B"])
    # The client answers the first response late and subscribes to C in the same request.
    responses = sim.request(ROUTE, ["C"], nonce=first)
    assert sim.kinds[-1] is DeltaKind.ACK
    assert summary(responses) == [("rds", ["C"], [])]
    assert sim.states[ROUTE].acked == {"A": res(ROUTE, "A").version}


def test_an_unknown_nonce_is_stale_but_its_subscriptions_apply():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B"}))
    sim.request(ROUTE, ["A"])
    responses = sim.request(ROUTE, ["B"], nonce="from-another-stream")
    assert sim.kinds[-1] is DeltaKind.STALE
    assert summary(responses) == [("rds", ["B"], [])]


def test_acks_settle_older_pending_responses_and_pending_is_bounded():
    state = DeltaTypeState(ROUTE)
    for i in range(MAX_PENDING + 10):
        state.record_sent(DeltaResponse(ROUTE, "v", (res(ROUTE, f"R{i}"),)), str(i))
    assert len(state.pending) == MAX_PENDING
    assert "0" not in state.pending and str(MAX_PENDING + 9) in state.pending


# --- R7, R8: NACK parks ----------------------------------------------------------------------------


def test_nack_is_recorded_and_the_rejected_version_is_never_resent():
    sim = DeltaSim(snapshot_of({LISTENER: "A,B"}))
    sim.request(LISTENER)
    sim.ack(LISTENER)
    bad = snapshot_of({LISTENER: "A,B"}).with_resources(res(LISTENER, "A", "bad"))
    assert summary(sim.set_snapshot(bad)) == [("lds", ["A"], [])]
    assert sim.nack(LISTENER, "bad listener") == []  # parked: no resend in answer to the NACK
    state = sim.states[LISTENER]
    assert sim.kinds[-1] is DeltaKind.NACK and state.last_nack_error == "bad listener"
    assert state.status is SyncStatus.ERROR
    assert state.rejected == {"A": res(LISTENER, "A", "bad").version}
    assert state.sent["A"] == res(LISTENER, "A").version  # the client still runs the old A
    assert sim.request(LISTENER, ["A"]) == []  # not even an explicit subscribe resends that version
    # Another resource changes: only that one goes out; A stays parked.
    other = bad.with_resources(res(LISTENER, "B", "2"))
    assert summary(sim.set_snapshot(other)) == [("lds", ["B"], [])]
    sim.ack(LISTENER)
    assert state.status is SyncStatus.ERROR
    # A changes: the correction goes out at once.
    fixed = other.with_resources(res(LISTENER, "A", "3"))
    assert summary(sim.set_snapshot(fixed)) == [("lds", ["A"], [])]
    sim.ack(LISTENER)
    assert state.status is SyncStatus.SYNCED and state.rejected == {}


def test_reverting_to_the_acked_version_after_a_nack_sends_nothing():
    sim = DeltaSim(snapshot_of({LISTENER: "A"}))
    sim.request(LISTENER)
    sim.ack(LISTENER)
    sim.set_snapshot(snapshot_of({LISTENER: "A"}, version="bad"))
    sim.nack(LISTENER)
    assert sim.set_snapshot(snapshot_of({LISTENER: "A"})) == []  # the client already runs it
    assert sim.states[LISTENER].status is SyncStatus.SYNCED


# --- R14, R15, R19, R26: what is sent -------------------------------------------------------------


def test_only_changed_resources_are_sent():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B,C"}))
    sim.request(ROUTE, ["A", "B", "C"])
    sim.ack(ROUTE)
    changed = snapshot_of({ROUTE: "A,B,C"}).with_resources(res(ROUTE, "B", "2"))
    assert summary(sim.set_snapshot(changed)) == [("rds", ["B"], [])]
    sim.ack(ROUTE)
    assert sim.set_snapshot(changed) == []


def test_resubscribing_to_a_held_name_resends_it():
    sim = DeltaSim(snapshot_of({ROUTE: "A"}))
    sim.request(ROUTE, ["A"])
    sim.ack(ROUTE)
    assert summary(sim.request(ROUTE, ["A"])) == [("rds", ["A"], [])]  # the client may have forgotten it


def test_unsubscribed_names_get_no_updates_and_resubscribing_sends_them():
    sim = DeltaSim(snapshot_of({ROUTE: "A,B"}))
    sim.request(ROUTE, ["A", "B"])
    sim.ack(ROUTE)
    assert sim.request(ROUTE, unsubscribe=["B"]) == []
    assert sim.set_snapshot(snapshot_of({ROUTE: "A,B"}, version="2")) == [
        DeltaResponse(ROUTE, sim.snapshot.version(ROUTE), (res(ROUTE, "A", "2"),))
    ]
    sim.ack(ROUTE)
    assert summary(sim.request(ROUTE, ["B"])) == [("rds", ["B"], [])]


def test_a_spurious_unsubscribe_is_ignored():
    sim = DeltaSim(snapshot_of({ROUTE: "A"}))
    sim.request(ROUTE, ["A"])
    sim.ack(ROUTE)
    assert sim.request(ROUTE, unsubscribe=["never-subscribed"]) == []
    assert sub(sim, ROUTE) == (False, ["A"])


def test_absent_name_is_answered_once_then_sent_when_it_appears():
    sim = DeltaSim(snapshot_of({ROUTE: "A"}))
    assert summary(sim.request(ROUTE, ["A", "Z"])) == [("rds", ["A"], ["Z"])]
    sim.ack(ROUTE)
    assert sim.set_snapshot(snapshot_of({ROUTE: "A"}, version="1")) == []  # not announced again
    assert summary(sim.request(ROUTE, ["Z"])) == [("rds", [], ["Z"])]  # asked again: answered again
    sim.ack(ROUTE)
    assert summary(sim.set_snapshot(snapshot_of({ROUTE: "A,Z"}))) == [("rds", ["Z"], [])]


# --- R24: per-type removal policy ------------------------------------------------------------------

POLICY_TABLE = [
    # type, held resource deleted -> announced?
    (LISTENER, True),
    (CLUSTER, True),
    (ENDPOINT, False),
    (ROUTE, False),
    (SECRET, False),
]


@pytest.mark.parametrize(("type_url", "announced"), POLICY_TABLE)
def test_deleting_a_held_resource_follows_the_type_policy(type_url, announced):
    assert DEFAULT_POLICIES[type_url].announce_deleted is announced
    short = summary_type(type_url)
    sim = DeltaSim(snapshot_of({type_url: "A,B"}))
    sim.request(type_url, ["A", "B"])
    sim.ack(type_url)
    responses = sim.set_snapshot(snapshot_of({type_url: "A"}))
    assert summary(responses) == ([(short, [], ["B"])] if announced else [])
    if announced:
        sim.ack(type_url)
        assert "B" not in sim.states[type_url].sent
    else:
        assert "B" in sim.states[type_url].sent  # the client still holds it, as far as we know
    # Coming back at the same content: resent only if the client was told it was removed.
    responses = sim.set_snapshot(snapshot_of({type_url: "A,B"}))
    assert summary(responses) == ([(short, ["B"], [])] if announced else [])


@pytest.mark.parametrize("type_url", ALL_TYPES)
def test_a_subscribed_name_that_does_not_exist_is_answered_for_every_type(type_url):
    assert DEFAULT_POLICIES[type_url].announce_absent
    sim = DeltaSim(snapshot_of({type_url: "A"}))
    assert summary(sim.request(type_url, ["Z"])) == [(summary_type(type_url), [], ["Z"])]


def test_policies_can_be_overridden_per_type():
    quiet = RemovalPolicy(announce_deleted=False, announce_absent=False)
    sim = DeltaSim(snapshot_of({ROUTE: "A,B"}), policies={ROUTE: ANNOUNCE_ALL, ENDPOINT: quiet})
    sim.request(ROUTE, ["A", "B"])
    sim.ack(ROUTE)
    assert summary(sim.set_snapshot(snapshot_of({ROUTE: "A"}))) == [("rds", [], ["B"])]
    assert sim.request(ENDPOINT, ["Z"]) == []
    assert KEEP_ON_DELETE.announce_absent and not KEEP_ON_DELETE.announce_deleted


def test_wildcard_deletions_are_announced_for_lds_and_cds():
    sim = DeltaSim(snapshot_of({LISTENER: "A,B,C"}))
    sim.request(LISTENER)
    sim.ack(LISTENER)
    assert summary(sim.set_snapshot(snapshot_of({LISTENER: "A"}))) == [("lds", [], ["B", "C"])]
    sim.ack(LISTENER)
    assert summary(sim.set_snapshot(snapshot_of({LISTENER: "A,D"}))) == [("lds", ["D"], [])]


# --- R25: wildcard plus an explicit name ---------------------------------------------------------


def test_unsubscribing_an_explicit_name_still_covered_by_the_wildcard_answers_it():
    sim = DeltaSim(snapshot_of({CLUSTER: "A,B"}))
    sim.request(CLUSTER)
    sim.ack(CLUSTER)
    sim.request(CLUSTER, ["A"])
    sim.ack(CLUSTER)
    assert summary(sim.request(CLUSTER, unsubscribe=["A"])) == [("cds", ["A"], [])]
    sim.ack(CLUSTER)
    sim.request(CLUSTER, ["Z"])  # absent: answered in removed_resources
    sim.ack(CLUSTER)
    assert summary(sim.request(CLUSTER, unsubscribe=["Z"])) == [("cds", [], ["Z"])]


def test_unsubscribing_the_wildcard_forgets_names_only_it_covered():
    sim = DeltaSim(snapshot_of({CLUSTER: "A,B"}))
    sim.request(CLUSTER, ["*", "A"])
    sim.ack(CLUSTER)
    assert sim.request(CLUSTER, unsubscribe=["*"]) == []
    assert sim.states[CLUSTER].sent.keys() == {"A"}
    assert summary(sim.set_snapshot(snapshot_of({CLUSTER: "A,B"}, version="2"))) == [("cds", ["A"], [])]


# --- R26, R34: initial_resource_versions on reconnect ----------------------------------------------


def test_reconnect_with_initial_versions_sends_what_differs_or_is_missing():
    snap = snapshot_of({ROUTE: "CUR,OLD,NEW"})
    sim = DeltaSim(snap)
    initial = {
        "CUR": res(ROUTE, "CUR").version,  # current: not resent
        "OLD": "some-old-version",  # stale: resent
        "GONE": "whatever",  # unknown here: answered as removed (absent)
    }
    responses = sim.request(ROUTE, ["CUR", "OLD", "NEW", "GONE"], initial=initial)
    assert summary(responses) == [("rds", ["NEW", "OLD"], ["GONE"])]


def test_wildcard_reconnect_with_everything_current_gets_one_empty_answer():
    snap = snapshot_of({CLUSTER: "A,B"})
    sim = DeltaSim(snap)
    initial = {n: r.version for n, r in snap.resources(CLUSTER).items()}
    assert summary(sim.request(CLUSTER, initial=initial)) == [("cds", [], [])]
    sim.ack(CLUSTER)
    assert sim.states[CLUSTER].status is SyncStatus.SYNCED


def test_wildcard_reconnect_announces_clusters_the_client_has_that_no_longer_exist():
    snap = snapshot_of({CLUSTER: "A"})
    sim = DeltaSim(snap)
    initial = {"A": res(CLUSTER, "A").version, "OLD": "v0"}
    assert summary(sim.request(CLUSTER, initial=initial)) == [("cds", [], ["OLD"])]


def test_initial_versions_apply_only_on_the_first_request():
    sim = DeltaSim(snapshot_of({ROUTE: "A"}))
    sim.request(ROUTE, ["A"])
    sim.ack(ROUTE)
    later = sim.request(ROUTE, initial={"A": "forged"})
    assert later == [] and sim.states[ROUTE].sent["A"] == res(ROUTE, "A").version


def test_an_explicit_subscribe_after_reconnect_resends_even_a_current_resource():
    snap = snapshot_of({SECRET: "cert"})
    sim = DeltaSim(snap)
    assert sim.request(SECRET, ["cert"], initial={"cert": res(SECRET, "cert").version}) == []
    # A new listener makes Envoy subscribe again (EG#9519): it must get the secret.
    assert summary(sim.request(SECRET, ["cert"])) == [("sds", ["cert"], [])]


# --- R28, R29: warming and order -------------------------------------------------------------------


def test_a_cds_change_resends_eds_for_the_changed_clusters_only():
    sim = DeltaSim(snapshot_of({CLUSTER: "A,B", ENDPOINT: "A,B"}))
    sim.request(CLUSTER)
    sim.ack(CLUSTER)
    sim.request(ENDPOINT, ["A", "B"])
    sim.ack(ENDPOINT)
    changed = snapshot_of({CLUSTER: "A,B", ENDPOINT: "A,B"}).with_resources(res(CLUSTER, "A", "2"))
    assert summary(sim.set_snapshot(changed)) == [("cds", ["A"], []), ("eds", ["A"], [])]


def test_pushes_go_cds_eds_lds_rds_sds_and_cluster_removals_last():
    v1 = snapshot_of({CLUSTER: "A,OLD", ENDPOINT: "A", LISTENER: "L", ROUTE: "R", SECRET: "S"})
    sim = DeltaSim(v1)
    for type_url, names in (
        (SECRET, ["S"]),
        (ROUTE, ["R"]),
        (LISTENER, []),
        (ENDPOINT, ["A"]),
        (CLUSTER, []),
    ):
        sim.request(type_url, names)
        sim.ack(type_url)
    v2 = snapshot_of({CLUSTER: "A,NEW", ENDPOINT: "A", LISTENER: "L", ROUTE: "R", SECRET: "S"}, version="2")
    assert summary(sim.set_snapshot(v2)) == [
        ("cds", ["A", "NEW"], []),
        ("eds", ["A"], []),
        ("lds", ["L"], []),
        ("rds", ["R"], []),
        ("sds", ["S"], []),
        ("cds", [], ["OLD"]),
    ]


# --- wire: hand-encoded bytes equal betterproto2's ---------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "removed", "control_plane"),
    [
        ([], [], ""),
        ([res(CLUSTER, "A"), res(CLUSTER, "B", "2")], [], "agentic-cp/test"),
        ([res(CLUSTER, "A")], ["gone", "also-gone"], "cp"),
        ([], ["only-removed"], ""),
    ],
)
def test_delta_response_bytes_equal_betterproto2(resources, removed, control_plane):
    ours = encode_delta_discovery_response(
        system_version_info="sys-1",
        resources=[
            encode_delta_resource(name=r.name, version=r.version, any_bytes=r.any_bytes) for r in resources
        ],
        type_url=CLUSTER,
        removed_resources=removed,
        nonce="n-1",
        control_plane_id=control_plane,
    )
    theirs = DeltaDiscoveryResponse(
        system_version_info="sys-1",
        resources=[
            Resource(name=r.name, version=r.version, resource=AnyMessage(type_url=r.type_url, value=r.body))
            for r in resources
        ],
        type_url=CLUSTER,
        removed_resources=removed,
        nonce="n-1",
        control_plane=ControlPlane(identifier=control_plane) if control_plane else None,
    )
    assert ours == bytes(theirs)
    parsed = DeltaDiscoveryResponse.parse(ours)
    assert [r.name for r in parsed.resources] == [r.name for r in resources]
    assert parsed.removed_resources == removed


def test_a_nacked_removal_is_announced_again_once_then_parked():
    sim = DeltaSim(snapshot_of({LISTENER: "A,B"}))
    sim.request(LISTENER)
    sim.ack(LISTENER)
    assert summary(sim.set_snapshot(snapshot_of({LISTENER: "A"}))) == [("lds", [], ["B"])]
    # A client that rejects a response whole still holds B: it is told once more ...
    assert summary(sim.nack(LISTENER)) == [("lds", [], ["B"])]
    # ... and if it rejects that too, the removal is parked: no loop.
    assert sim.nack(LISTENER) == []
    assert sim.set_snapshot(snapshot_of({LISTENER: "A"})) == []
    # B coming back is sent normally.
    assert summary(sim.set_snapshot(snapshot_of({LISTENER: "A,B"}))) == [("lds", ["B"], [])]
