"""Table tests of the SotW state machine (controlplane/xds/protocol.py), no I/O.

Each test names the rule of reference/xds-control-planes.md it pins down.
"""

from __future__ import annotations

import pytest

from controlplane.xds.cache import Snapshot
from controlplane.xds.protocol import RequestKind, Response, Subscription, SyncStatus, push_order
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from tests.xds.xds_helpers import res, snapshot_of
from tests.xds.xds_sotw import Stream

ALL_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)


def names(response: Response) -> list[str]:
    return [r.name for r in response.resources]


def only(responses: list[Response]) -> Response:
    assert len(responses) == 1, responses
    return responses[0]


# --- R17: wildcard, exactly the spec's SotW sequences ------------------------------------------

WILDCARD_SEQUENCES = [
    # (type, [requested names per request], [(wildcard, names) after each request])
    (
        "legacy wildcard, then explicit * plus A, then A alone, then nothing",
        CLUSTER,
        [[], ["*", "A"], ["A"], []],
        [(True, set()), (True, {"A"}), (False, {"A"}), (False, set())],
    ),
    (
        "empty list stays legacy wildcard until a name is given",
        LISTENER,
        [[], [], ["A"], []],
        [(True, set()), (True, set()), (False, {"A"}), (False, set())],
    ),
    (
        "explicit first: an empty list later means nothing, not wildcard",
        CLUSTER,
        [["A"], []],
        [(False, {"A"}), (False, set())],
    ),
    (
        "explicit * then empty: unsubscribed from everything",
        LISTENER,
        [["*"], []],
        [(True, set()), (False, set())],
    ),
    (
        "legacy wildcard only for LDS/CDS: an empty first EDS request subscribes to nothing",
        ENDPOINT,
        [[], ["*"], ["A"]],
        [(False, set()), (True, set()), (False, {"A"})],
    ),
    ("duplicates collapse", ROUTE, [["A", "A", "B"]], [(False, {"A", "B"})]),
]


@pytest.mark.parametrize(
    ("title", "type_url", "requests", "expected"), WILDCARD_SEQUENCES, ids=[s[0] for s in WILDCARD_SEQUENCES]
)
def test_wildcard_sequences(title, type_url, requests, expected):
    subscription = Subscription(legacy_wildcard_allowed=type_url in (CLUSTER, LISTENER))
    for requested, (wildcard, subscribed) in zip(requests, expected, strict=True):
        subscription.update(requested)
        assert (subscription.wildcard, set(subscription.names)) == (wildcard, subscribed)


def test_wildcard_sequence_decides_what_is_sent():
    stream = Stream(snapshot_of({CLUSTER: "A,B,C"}))
    assert names(only(stream.request(CLUSTER, []))) == ["A", "B", "C"]
    assert stream.request(CLUSTER, ["*", "A"]) == []  # nothing new: wildcard already covers A
    assert stream.request(CLUSTER, ["A"]) == []  # shrinking the set needs no response
    assert names(only(stream.set_snapshot(snapshot_of({CLUSTER: "A,B,C"}, version="2")))) == ["A"]
    assert stream.request(CLUSTER, []) == []
    assert stream.set_snapshot(snapshot_of({CLUSTER: "A,B,C"}, version="3")) == []


def test_empty_wildcard_world_is_still_answered_for_cds():
    """LDS/CDS must answer the first request even when there is nothing: Envoy waits for it."""
    stream = Stream(Snapshot([res(ROUTE, "R")]))
    response = only(stream.request(CLUSTER))
    assert response.resources == ()


# --- R14: send only on change -------------------------------------------------------------------


def test_nothing_is_sent_when_nothing_changed():
    stream = Stream(snapshot_of({CLUSTER: "A,B", ROUTE: "R"}))
    assert stream.request(CLUSTER)
    assert stream.request(ROUTE, ["R"])
    assert stream.request(CLUSTER) == []  # the ACK
    assert stream.request(ROUTE, ["R"]) == []
    assert stream.set_snapshot(snapshot_of({CLUSTER: "A,B", ROUTE: "R"})) == []
    # a change to a resource the client did not ask for is not its business
    assert stream.set_snapshot(snapshot_of({CLUSTER: "A,B", ROUTE: "R,S"}, version="1")) == []


# --- R7/R8: NACK is parked, the correction is sent once ------------------------------------------


@pytest.mark.parametrize("type_url", [CLUSTER, LISTENER, ROUTE, ENDPOINT, SECRET])
def test_nack_is_parked_until_the_snapshot_changes(type_url):
    stream = Stream(snapshot_of({type_url: "A"}))
    first = only(stream.request(type_url, ["A"]))
    stream.request(type_url, ["A"])  # ACK v1
    bad = only(stream.set_snapshot(snapshot_of({type_url: "A"}, version="bad")))
    sent = []
    for _ in range(5):  # the client keeps NACKing: never answered with the same bytes
        sent += stream.request(type_url, ["A"], version=first.version_info, error="invalid address")
        sent += stream.set_snapshot(stream.snapshot)  # re-setting the same content is no change
    assert sent == []
    assert stream.kinds[-1] is RequestKind.NACK
    state = stream.states[type_url]
    assert state.status is SyncStatus.ERROR and state.last_nack_error == "invalid address"
    assert state.version_acked == first.version_info
    fixed = only(stream.set_snapshot(snapshot_of({type_url: "A"}, version="fixed")))
    assert fixed.version_info not in (first.version_info, bad.version_info)
    assert names(fixed) == ["A"]
    stream.request(type_url, ["A"])
    assert state.status is SyncStatus.SYNCED


def test_nack_with_a_new_name_sends_only_the_new_name():
    stream = Stream(snapshot_of({ROUTE: "A,B"}))
    stream.request(ROUTE, ["A"])
    response = only(stream.request(ROUTE, ["A", "B"], error="bad A"))
    assert names(response) == ["B"]


# --- R9: stale nonce ----------------------------------------------------------------------------


def test_stale_nonce_is_ignored_but_its_subscription_is_kept():
    stream = Stream(snapshot_of({ROUTE: "A,B"}))
    stream.request(ROUTE, ["A"])  # nonce 1
    stream.set_snapshot(snapshot_of({ROUTE: "A,B"}, version="2"))  # nonce 2 in flight
    # the client, not having seen nonce 2 yet, adds B while ACKing nonce 1
    assert stream.request(ROUTE, ["A", "B"], nonce="1") == []
    assert stream.kinds[-1] is RequestKind.STALE
    # its ACK of nonce 2 then carries the same names: B is served now, A is not resent
    assert names(only(stream.request(ROUTE, ["A", "B"]))) == ["B"]


def test_a_nonce_this_stream_never_issued_is_a_fresh_request():
    """A reconnecting client may carry a nonce from its previous stream (R6): answer it."""
    stream = Stream(snapshot_of({CLUSTER: "A"}))
    assert names(only(stream.request(CLUSTER, [], nonce="old-stream-7", version="x-1"))) == ["A"]
    assert stream.kinds == [RequestKind.INITIAL]


# --- R15/R19: new names, unknown names, resubscription -------------------------------------------


@pytest.mark.parametrize(
    ("type_url", "expected"),
    [(ROUTE, ["B"]), (ENDPOINT, ["B"]), (CLUSTER, ["A", "B"]), (LISTENER, ["A", "B"])],
)
def test_newly_requested_name_is_sent_even_when_unchanged(type_url, expected):
    stream = Stream(snapshot_of({type_url: "A,B"}))
    assert names(only(stream.request(type_url, ["A"]))) == ["A"]
    assert names(only(stream.request(type_url, ["A", "B"]))) == expected


@pytest.mark.parametrize(("type_url", "expected"), [(ROUTE, ["Z"]), (CLUSTER, ["A", "Z"])])
def test_unknown_name_is_remembered_and_sent_when_created(type_url, expected):
    stream = Stream(snapshot_of({type_url: "A"}))
    assert names(only(stream.request(type_url, ["A", "Z"]))) == ["A"]
    assert stream.request(type_url, ["A", "Z"]) == []
    assert names(only(stream.set_snapshot(snapshot_of({type_url: "A,Z"})))) == expected


def test_unknown_name_alone_gets_no_empty_eds_response():
    stream = Stream(snapshot_of({ENDPOINT: "A"}))
    assert stream.request(ENDPOINT, ["Z"]) == []


@pytest.mark.parametrize("type_url", ALL_TYPES)
def test_resubscribe_after_unsubscribe_resends(type_url):
    stream = Stream(snapshot_of({type_url: "A,B"}))
    stream.request(type_url, ["A", "B"])
    assert stream.request(type_url, ["A"]) == []
    assert "B" in names(only(stream.request(type_url, ["A", "B"])))


def test_deleted_then_recreated_route_is_resent():
    stream = Stream(snapshot_of({ROUTE: "A,B"}))
    stream.request(ROUTE, ["A", "B"])
    assert stream.set_snapshot(snapshot_of({ROUTE: "A"})) == []  # RDS deletion is implicit (R23)
    assert names(only(stream.set_snapshot(snapshot_of({ROUTE: "A,B"})))) == ["B"]


def test_cds_deletion_sends_the_complete_remaining_set():
    stream = Stream(snapshot_of({CLUSTER: "A,B"}))
    stream.request(CLUSTER)
    assert names(only(stream.set_snapshot(snapshot_of({CLUSTER: "A"})))) == ["A"]  # absence = deletion


# --- R21: never a duplicate name -----------------------------------------------------------------


def test_no_duplicate_names_in_a_response():
    stream = Stream(snapshot_of({CLUSTER: "A,B"}))
    response = only(stream.request(CLUSTER, ["A", "*", "A", "B", "B"]))
    assert names(response) == ["A", "B"]


def test_snapshot_refuses_duplicate_names():
    with pytest.raises(ValueError, match="duplicate"):
        Snapshot([res(CLUSTER, "A", "1"), res(CLUSTER, "A", "2")])


# --- R28/R29: ordering and EDS after CDS --------------------------------------------------------


def _subscribe_everything(stream: Stream) -> None:
    for type_url in (SECRET, ROUTE, LISTENER, ENDPOINT, CLUSTER):  # deliberately reversed
        stream.request(type_url, [] if type_url in (CLUSTER, LISTENER) else ["A"])
        stream.request(type_url, [] if type_url in (CLUSTER, LISTENER) else ["A"])


def test_several_changed_types_are_pushed_cds_eds_lds_rds_sds():
    stream = Stream(snapshot_of({t: "A" for t in ALL_TYPES}))
    _subscribe_everything(stream)
    responses = stream.set_snapshot(snapshot_of({t: "A" for t in ALL_TYPES}, version="2"))
    assert [r.type_url for r in responses] == [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
    assert push_order([ROUTE, "type.googleapis.com/x.Y", CLUSTER]) == [
        CLUSTER,
        ROUTE,
        "type.googleapis.com/x.Y",
    ]


def test_eds_is_resent_after_a_cds_change_even_if_unchanged():
    world = {CLUSTER: "A", ENDPOINT: "A", LISTENER: "A"}
    stream = Stream(snapshot_of(world))
    _subscribe_everything(stream)
    changed = snapshot_of(world).with_resources(res(CLUSTER, "A", "2"))
    responses = stream.set_snapshot(changed)
    assert [(r.type_url, names(r)) for r in responses] == [(CLUSTER, ["A"]), (ENDPOINT, ["A"])]


def test_eds_is_not_resent_when_cds_did_not_change():
    world = {CLUSTER: "A", ENDPOINT: "A", LISTENER: "A"}
    stream = Stream(snapshot_of(world))
    _subscribe_everything(stream)
    responses = stream.set_snapshot(snapshot_of(world).with_resources(res(LISTENER, "A", "2")))
    assert [r.type_url for r in responses] == [LISTENER]


def test_a_cds_response_to_a_request_also_resends_eds():
    stream = Stream(snapshot_of({CLUSTER: "A,B", ENDPOINT: "A"}))
    stream.request(CLUSTER, ["A"])
    stream.request(ENDPOINT, ["A"])
    responses = stream.request(CLUSTER, ["A", "B"])  # a new cluster: CDS answers, EDS follows
    assert [(r.type_url, names(r)) for r in responses] == [(CLUSTER, ["A", "B"]), (ENDPOINT, ["A"])]
    assert stream.request(CLUSTER, ["A", "B", "Z"]) == []  # Z does not exist: nothing to send


# --- status and bookkeeping ---------------------------------------------------------------------


def test_status_goes_not_sent_stale_synced_error():
    stream = Stream()
    stream.request(CLUSTER)
    state = stream.states[CLUSTER]
    assert state.status is SyncStatus.NOT_SENT  # no snapshot yet: not served (R32)
    stream.set_snapshot(snapshot_of({CLUSTER: "A"}))
    assert state.status is SyncStatus.STALE
    stream.request(CLUSTER)
    assert state.status is SyncStatus.SYNCED and state.version_acked == state.version_sent
    stream.set_snapshot(snapshot_of({CLUSTER: "A"}, version="2"))
    stream.request(CLUSTER, error="boom")
    assert state.status is SyncStatus.ERROR


def test_record_sent_happens_before_the_write():
    """The nonce is already current when plan returns to the writer (R13): a fast ACK matches."""
    stream = Stream(snapshot_of({CLUSTER: "A"}))
    stream.request(CLUSTER)
    assert stream.states[CLUSTER].nonce_sent == "1"
    assert stream.request(CLUSTER) == [] and stream.kinds[-1] is RequestKind.ACK
