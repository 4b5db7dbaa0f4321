"""The incremental (delta) xDS protocol for one (stream, type URL), as a pure state machine.

The delta twin of protocol.py: no I/O, no clocks, no protobuf. A ``DeltaRequest`` comes
in, a ``DeltaResponse`` plan (upserted resources plus removed names) comes out, and the
caller stamps a nonce and records the send before writing it (R13). Per-resource
versions are the resources' content hashes, so they are equal across replicas and
restarts and a reconnecting client's ``initial_resource_versions`` can be trusted.

Rules it implements (numbers from reference/xds-control-planes.md):

- subscriptions change only through ``resource_names_subscribe``/``_unsubscribe``;
  ``*`` is the explicit wildcard, and for LDS/CDS a first request that subscribes to
  nothing is the legacy wildcard, which is gone once the client names anything (R17);
- a subscription change is honoured whatever nonce the request carries, stale or none
  (R10); a request without a nonce is never an ACK (R11); ACK and NACK are told apart by
  ``error_detail`` (R7) and correlated with the response by nonce;
- a NACKed response's resources are parked at the rejected version: never resent until
  that resource changes (R8), and the correction goes out as soon as it does;
- only what changed is sent (R14); a name the client subscribes to explicitly is sent
  again even if it was sent before (R15, R26), and a name that does not exist yet is
  sent when it appears (R19);
- on (re)connect, ``initial_resource_versions`` tells what the client holds: a resource
  it holds at the current version is not resent, anything else (older version, unknown
  to it) is (R26, conservative: missing a resource is an outage, a resend is cheap); a
  claimed name that does not exist here is answered in removed_resources, for every type;
  claims for names the client is not subscribed to are ignored;
- a NACK of a response that removed names re-announces those removals once (a client that
  rejects a response whole still holds them), then parks them;
- removals follow a per-type ``RemovalPolicy`` (R24): see ``DEFAULT_POLICIES``;
- unsubscribing an explicit name while the wildcard still covers it answers that name
  again, in resources or (if gone) in removed_resources (R25);
- ``plan_delta_pushes`` pushes CDS, EDS, LDS, RDS, SDS in that order (R29), forces EDS
  for every cluster a CDS response carried (R28), and defers CDS removals until after
  the listeners and routes that stopped using those clusters (R29, "stale CDS clusters
  ... can then be removed").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.logs import bound
from controlplane.xds.cache import Snapshot
from controlplane.xds.protocol import WILDCARD, WILDCARD_TYPES, SyncStatus, push_order
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, XdsResource

#: Responses awaiting an ACK/NACK that a stream remembers; older ones are forgotten (a client
#: that never answers must not grow the server's memory).
MAX_PENDING = 64


@dataclass(frozen=True, slots=True)
class RemovalPolicy:
    """When a delta response names a resource in ``removed_resources`` (R24).

    ``announce_deleted``: a resource the client holds was deleted from the snapshot.
    ``announce_absent``: the client subscribed to a name (explicitly, or via
    ``initial_resource_versions``) that does not exist; it is answered once, until the
    client subscribes to it again or it comes into existence.
    """

    announce_deleted: bool
    announce_absent: bool = True


#: LDS/CDS: deletion in delta is only ever expressed by removed_resources, so announce it.
ANNOUNCE_ALL = RemovalPolicy(announce_deleted=True, announce_absent=True)
#: EDS/RDS/SDS (and unknown types): a name that merely disappeared from a snapshot is not
#: announced. Its parent (cluster, listener) going away is what removes it in Envoy, and a
#: premature "removed" has cost real outages (gcp#488, Istio#34949/#49852, envoy#32823).
#: A subscribed name that does not exist is still answered once, as the spec and the ii
#: harness expect ("Knowing when a requested resource does not exist").
KEEP_ON_DELETE = RemovalPolicy(announce_deleted=False, announce_absent=True)
DEFAULT_POLICIES: Mapping[str, RemovalPolicy] = {
    LISTENER: ANNOUNCE_ALL,
    CLUSTER: ANNOUNCE_ALL,
    ENDPOINT: KEEP_ON_DELETE,
    ROUTE: KEEP_ON_DELETE,
    SECRET: KEEP_ON_DELETE,
}


def default_policy(type_url: str) -> RemovalPolicy:
    return DEFAULT_POLICIES.get(type_url, KEEP_ON_DELETE)


class DeltaKind(enum.Enum):
    INITIAL = "initial"  # first request for this type on the stream
    SUBSCRIBE = "subscribe"  # spontaneous (no nonce): a subscription change, never an ACK (R11)
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"  # a nonce this stream has no pending response for; subscriptions still apply (R10)


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """The fields of a DeltaDiscoveryRequest that drive the protocol."""

    type_url: str
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_versions: Mapping[str, str] = field(default_factory=dict)
    response_nonce: str = ""
    error_message: str | None = None  # set iff the request carried error_detail (a NACK)


@dataclass(frozen=True, slots=True)
class DeltaResponse:
    """A planned DeltaDiscoveryResponse, before a nonce is stamped on it."""

    type_url: str
    system_version_info: str
    resources: tuple[XdsResource, ...]
    removed: tuple[str, ...] = ()


@dataclass(slots=True)
class DeltaSubscription:
    """Names a delta client wants for one type; wildcard and legacy wildcard tracked explicitly (R17)."""

    legacy_wildcard_allowed: bool
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    started: bool = False  # a first request was seen: the legacy wildcard can no longer begin

    def update(self, subscribe: Iterable[str], unsubscribe: Iterable[str]) -> tuple[set[str], set[str]]:
        """Apply one request (subscribe first, then unsubscribe, so ``+* -*`` opts out of the
        implicit wildcard as Istio's on-demand clients do); returns (subscribed, unsubscribed)."""
        subscribe, unsubscribe = list(subscribe), list(unsubscribe)
        if not self.started:
            self.started = True
            if not subscribe and self.legacy_wildcard_allowed:
                self.wildcard = True  # legacy wildcard: first request names nothing
        names = set(self.names)
        for name in subscribe:
            if name == WILDCARD:
                self.wildcard = True
            else:
                names.add(name)
        for name in unsubscribe:
            if name == WILDCARD:
                self.wildcard = False
            else:
                names.discard(name)
        self.names = frozenset(names)
        return {n for n in subscribe if n != WILDCARD}, {n for n in unsubscribe if n != WILDCARD}

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(frozen=True, slots=True)
class _Pending:
    versions: Mapping[str, str]  # name -> version sent in that response
    removed: tuple[str, ...]
    system_version: str


@dataclass(slots=True)
class DeltaTypeState:
    """Delta protocol state of one type URL on one stream."""

    type_url: str
    policy: RemovalPolicy | None = None
    subscription: DeltaSubscription = field(init=False)
    #: name -> version the client holds, as far as the server knows (sent, or claimed on reconnect)
    sent: dict[str, str] = field(default_factory=dict)
    #: name -> version the client ACKed
    acked: dict[str, str] = field(default_factory=dict)
    #: name -> version the client NACKed: parked, not resent until the resource changes (R8)
    rejected: dict[str, str] = field(default_factory=dict)
    #: names whose removal was NACKed once: re-announced once, then parked like a rejected version
    rejected_removals: set[str] = field(default_factory=set)
    #: names answered in removed_resources that the client has not been sent since
    told_absent: set[str] = field(default_factory=set)
    #: names that must be answered at the next plan even if the client holds them
    forced: set[str] = field(default_factory=set)
    pending: dict[str, _Pending] = field(default_factory=dict)  # nonce -> what it carried
    version_sent: str = ""
    nonce_sent: str = ""
    version_acked: str = ""
    nonce_acked: str = ""
    nonce_nacked: str = ""
    last_nack_error: str | None = None
    sent_stamp: float | None = None
    initial_answer_due: bool = False  # a wildcard INITIAL request gets a response even if empty
    claimed: set[str] = field(default_factory=set)  # initial_resource_versions names, until first plan

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = default_policy(self.type_url)
        self.subscription = DeltaSubscription(legacy_wildcard_allowed=self.type_url in WILDCARD_TYPES)

    # --- requests ----------------------------------------------------------------------------------
    def on_request(self, request: DeltaRequest) -> DeltaKind:
        """Classify a request, correlate its ACK/NACK and apply its subscription changes (always)."""
        first = not self.subscription.started
        kind = self._correlate(request, first)
        subscribed, unsubscribed = self.subscription.update(request.subscribe, request.unsubscribe)
        for name in subscribed:
            # R15/R26: an explicit subscribe is answered even for a name the client was sent.
            self.sent.pop(name, None)
            self.told_absent.discard(name)
        for name in unsubscribed:
            # The client drops what it unsubscribes from; if the wildcard still covers the
            # name, answer it again (R25). Spurious unsubscribes are otherwise no-ops.
            self.sent.pop(name, None)
            self.told_absent.discard(name)
            if self.subscription.wants(name):
                self.forced.add(name)
        for name in [n for n in self.sent if not self.subscription.wants(n)]:
            del self.sent[name]  # e.g. names only the wildcard covered, after unsubscribing "*"
        self.rejected_removals &= {n for n in self.rejected_removals if self.subscription.wants(n)}
        for names in (self.rejected, self.acked):
            for name in [n for n in names if not self.subscription.wants(n)]:
                del names[name]
        self.told_absent &= {n for n in self.told_absent if self.subscription.wants(n)}
        if first:
            for name, version in request.initial_versions.items():
                if self.subscription.wants(name):
                    self.sent[name] = version  # what the client says it holds (R26)
                    self.claimed.add(name)
            self.initial_answer_due = self.subscription.wildcard
        return kind

    def _correlate(self, request: DeltaRequest, first: bool) -> DeltaKind:
        nonce = request.response_nonce
        if not nonce:
            return DeltaKind.INITIAL if first else DeltaKind.SUBSCRIBE
        pending = self._take_pending(nonce)
        if request.error_message is not None:
            self.nonce_nacked, self.last_nack_error = nonce, bound(request.error_message)
            if pending is not None:
                for name, version in pending.versions.items():
                    self.rejected[name] = version
                    # The client kept what it had before this response.
                    if name in self.acked:
                        self.sent[name] = self.acked[name]
                    else:
                        self.sent.pop(name, None)
                for name in pending.removed:
                    # A client that rejects a response whole still holds what it removed: tell
                    # it again once (a partial applier such as Envoy's LDS ignores the repeat),
                    # but never loop on a removal the client keeps rejecting.
                    if name not in self.rejected_removals:
                        self.rejected_removals.add(name)
                        self.sent[name] = self.acked.get(name, "")
                        self.told_absent.discard(name)
            return DeltaKind.NACK
        if pending is None:
            return DeltaKind.INITIAL if first else DeltaKind.STALE
        self.acked.update(pending.versions)
        for name in pending.removed:
            self.acked.pop(name, None)
            self.rejected_removals.discard(name)
        self.version_acked, self.nonce_acked = pending.system_version, nonce
        return DeltaKind.ACK

    def _take_pending(self, nonce: str) -> _Pending | None:
        if nonce not in self.pending:
            return None
        # Responses are answered in order, and a rejected one would have been NACKed before this
        # answer arrived: older responses left unanswered were accepted.
        while self.pending:
            key = next(iter(self.pending))
            entry = self.pending.pop(key)
            if key == nonce:
                return entry
            self.acked.update(entry.versions)
            for name in entry.removed:
                self.acked.pop(name, None)
        return None  # unreachable

    # --- planning ----------------------------------------------------------------------------------
    def force(self, names: Iterable[str]) -> None:
        """Answer these names at the next plan even if unchanged (EDS after CDS, R28)."""
        self.forced.update(n for n in names if self.subscription.wants(n))

    def plan(
        self,
        resources: Mapping[str, XdsResource],
        system_version: str,
        *,
        upserts: bool = True,
        deletions: bool = True,
    ) -> DeltaResponse | None:
        """What to send now for this type, or None to stay quiet.

        ``upserts`` covers changed resources, answers for absent names and the initial answer;
        ``deletions`` covers held resources deleted from the snapshot. A caller may plan the two
        as separate responses (CDS deletions go after LDS/RDS); record each before the next plan.
        """
        policy = self.policy
        assert policy is not None
        for name in [n for n, v in self.rejected.items() if n not in resources or resources[n].version != v]:
            del self.rejected[name]  # the NACKed resource changed: the correction may go out
        self.rejected_removals -= resources.keys()
        chosen: dict[str, XdsResource] = {}
        removed: set[str] = set()
        if upserts:
            for name, resource in resources.items():
                if not self.subscription.wants(name) or self.rejected.get(name) == resource.version:
                    continue  # not wanted, or parked after a NACK (R8)
                if name in self.forced or self.sent.get(name) != resource.version:
                    chosen[name] = resource
            for name in self.claimed:
                if name not in resources and name in self.sent and policy.announce_absent:
                    # The client holds a name that does not exist here (a reconnect to a control
                    # plane that never had it, or lost it): say so once, whatever the type.
                    del self.sent[name]
                    removed.add(name)
            self.claimed = set()
            if policy.announce_absent:
                removed.update(
                    n
                    for n in self.subscription.names | self.forced
                    if n not in resources
                    and n not in self.sent
                    and n not in self.told_absent
                    and self.subscription.wants(n)
                )
            self.forced = set()
        if deletions and policy.announce_deleted:
            removed.update(n for n in self.sent if n not in resources)
        due = bool(chosen or removed) or (self.initial_answer_due and upserts)
        if not due:
            return None
        self.initial_answer_due = False
        return DeltaResponse(
            self.type_url, system_version, tuple(chosen[n] for n in sorted(chosen)), tuple(sorted(removed))
        )

    def record_sent(self, response: DeltaResponse, nonce: str, stamp: float | None = None) -> None:
        """Record a response as sent; call before writing it, so a fast ACK matches (R13)."""
        versions = {r.name: r.version for r in response.resources}
        self.sent.update(versions)
        self.told_absent -= versions.keys()
        for name in response.removed:
            self.sent.pop(name, None)
            self.told_absent.add(name)
        self.pending[nonce] = _Pending(versions, response.removed, response.system_version_info)
        while len(self.pending) > MAX_PENDING:
            del self.pending[next(iter(self.pending))]
        self.version_sent, self.nonce_sent, self.sent_stamp = response.system_version_info, nonce, stamp

    @property
    def status(self) -> SyncStatus:
        if not self.nonce_sent:
            return SyncStatus.NOT_SENT
        if self.nonce_sent in self.pending:
            return SyncStatus.STALE
        if self.rejected:
            return SyncStatus.ERROR
        return SyncStatus.SYNCED


def plan_delta_pushes(
    states: Mapping[str, DeltaTypeState], snapshot: Snapshot, type_urls: Iterable[str]
) -> list[DeltaResponse]:
    """Plan delta responses for the given types in push order (R29), with R28 and deferred CDS removals.

    The caller must ``record_sent`` each returned response, in order, before writing it.
    """
    targets = set(type_urls)
    responses: list[DeltaResponse] = []
    cds_removals_pending = False
    for type_url in push_order(states):
        state = states[type_url]
        if type_url not in targets and not state.forced:
            continue
        resources = snapshot.resources(type_url)
        version = snapshot.version(type_url)
        if type_url == CLUSTER:
            # Upserts now; clusters are removed only after LDS/RDS stopped referencing them.
            response = state.plan(resources, version, deletions=False)
            cds_removals_pending = True
        else:
            response = state.plan(resources, version)
        if response is None:
            continue
        responses.append(response)
        if type_url == CLUSTER and ENDPOINT in states and response.resources:
            # R28: a changed cluster warms only when its ClusterLoadAssignment arrives again.
            states[ENDPOINT].force(r.name for r in response.resources)
            targets.add(ENDPOINT)
    if cds_removals_pending:
        response = states[CLUSTER].plan(snapshot.resources(CLUSTER), snapshot.version(CLUSTER), upserts=False)
        if response is not None:
            responses.append(response)
    return responses
