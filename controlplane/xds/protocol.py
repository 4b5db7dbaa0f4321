"""The state-of-the-world xDS protocol for one (stream, type URL), as a pure state machine.

No I/O, no clocks, no protobuf: requests come in as ``Request`` values, decisions come
out as ``Response`` plans, and the caller stamps a nonce and records the send before
writing it (R13). That keeps every spec rule table-testable:

- wildcard and legacy wildcard exactly as the spec's sequences (R17);
- ACK/NACK told apart by ``error_detail`` (R7); a NACK is parked, never answered by
  resending the same bytes (R8), and the next snapshot change sends the correction;
- requests with a stale nonce get no response (R9), but their subscription changes are
  kept, so the next valid request or push serves them (envoy#10363);
- what the client holds is tracked per resource name (``sent``), so newly requested
  names are sent even when unchanged (R15), names that do not exist yet are sent when
  they appear (R19), and nothing is sent when nothing changed (R14);
- LDS and CDS responses always carry the complete subscribed set (R20); other types
  carry only what changed;
- a CDS push forces EDS to be resent so modified clusters finish warming (R28), and
  several types are pushed in the order CDS, EDS, LDS, RDS, SDS (R29).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.logs import bound
from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, XdsResource

WILDCARD = "*"
#: Types where an empty first request means "everything" (the legacy wildcard) and whose
#: SotW responses must be complete, because absence means deletion (R17, R20, R22).
WILDCARD_TYPES = frozenset({LISTENER, CLUSTER})
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)


class RequestKind(enum.Enum):
    INITIAL = "initial"  # no response_nonce: a new subscription for this type on the stream
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"  # nonce is not the last one sent for this type


class SyncStatus(enum.Enum):
    """CSDS ``ConfigStatus`` wording, as Istio's syncz uses it."""

    NOT_SENT = "NOT_SENT"
    STALE = "STALE"  # sent, not acknowledged yet
    SYNCED = "SYNCED"
    ERROR = "ERROR"  # the last response sent was NACKed


@dataclass(frozen=True, slots=True)
class Request:
    """The fields of a DiscoveryRequest that drive the protocol."""

    type_url: str
    resource_names: tuple[str, ...] = ()
    version_info: str = ""
    response_nonce: str = ""
    error_message: str | None = None  # set iff the request carried error_detail (a NACK)


@dataclass(frozen=True, slots=True)
class Response:
    """A planned DiscoveryResponse: what to send, before a nonce is stamped on it."""

    type_url: str
    version_info: str
    resources: tuple[XdsResource, ...]


@dataclass(slots=True)
class Subscription:
    """Which names a client wants for one type, with wildcard tracked explicitly (R17)."""

    legacy_wildcard_allowed: bool
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    explicit: bool = False  # the client has named resources once: the legacy wildcard is gone

    def update(self, requested: Iterable[str]) -> None:
        requested = frozenset(requested)
        if not requested and not self.explicit and self.legacy_wildcard_allowed:
            self.wildcard, self.names = True, frozenset()
            return
        self.explicit = self.explicit or bool(requested)
        self.wildcard = WILDCARD in requested
        self.names = requested - {WILDCARD}

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(slots=True)
class TypeState:
    """Protocol state of one type URL on one stream."""

    type_url: str
    subscription: Subscription = field(init=False)
    complete: bool = field(init=False)
    sent: dict[str, str] = field(default_factory=dict)  # name -> resource version the client was sent
    version_sent: str = ""
    nonce_sent: str = ""
    version_acked: str = ""
    nonce_acked: str = ""
    nonce_nacked: str = ""
    last_nack_error: str | None = None
    sent_stamp: float | None = None  # caller's opaque stamp of the snapshot behind the last send
    responded: bool = False
    forced: bool = False

    def __post_init__(self) -> None:
        self.complete = self.type_url in WILDCARD_TYPES
        self.subscription = Subscription(legacy_wildcard_allowed=self.complete)

    def on_request(self, request: Request) -> RequestKind:
        """Classify a request and apply its subscription; the caller responds unless STALE."""
        kind = self._classify(request)
        self._subscribe(request.resource_names)
        if kind is RequestKind.ACK:
            self.version_acked, self.nonce_acked = request.version_info, request.response_nonce
        elif kind is RequestKind.NACK:
            self.version_acked = request.version_info  # what the client still runs
            self.nonce_nacked, self.last_nack_error = request.response_nonce, bound(request.error_message)
        return kind

    def _classify(self, request: Request) -> RequestKind:
        if not request.response_nonce or not self.nonce_sent:
            # No nonce, or one this stream never issued (a reconnecting client's old nonce).
            return RequestKind.INITIAL
        if request.response_nonce != self.nonce_sent:
            return RequestKind.STALE
        return RequestKind.NACK if request.error_message is not None else RequestKind.ACK

    def _subscribe(self, names: Iterable[str]) -> None:
        self.subscription.update(names)
        # Forget what the client dropped, so a later resubscription resends it (R15).
        for name in [n for n in self.sent if not self.subscription.wants(n)]:
            del self.sent[name]

    def force_resend(self) -> None:
        """Resend every wanted resource at the next plan even if unchanged (EDS after CDS, R28)."""
        self.forced = True

    def plan(self, resources: Mapping[str, XdsResource], version_info: str) -> Response | None:
        """What to send now for this type given the snapshot's resources, or None to stay quiet."""
        wanted = {n: r for n, r in resources.items() if self.subscription.wants(n)}
        if self.complete:
            due = self.forced or not self.responded or self._differs(wanted)
            chosen = wanted if due else {}
        else:
            for name in [n for n in self.sent if n not in resources]:
                del self.sent[name]  # deleted upstream: resend if it comes back (R19)
            chosen = (
                wanted if self.forced else {n: r for n, r in wanted.items() if self.sent.get(n) != r.version}
            )
            due = bool(chosen)
        self.forced = False
        if not due:
            return None
        return Response(self.type_url, version_info, tuple(chosen[n] for n in sorted(chosen)))

    def _differs(self, wanted: Mapping[str, XdsResource]) -> bool:
        return wanted.keys() != self.sent.keys() or any(self.sent[n] != r.version for n, r in wanted.items())

    def record_sent(self, response: Response, nonce: str, stamp: float | None = None) -> None:
        """Record a response as sent; call before writing it, so a fast ACK matches (R13)."""
        versions = {r.name: r.version for r in response.resources}
        if self.complete:
            self.sent = versions
        else:
            self.sent.update(versions)
        self.version_sent, self.nonce_sent = response.version_info, nonce
        self.responded, self.sent_stamp = True, stamp

    @property
    def status(self) -> SyncStatus:
        if not self.nonce_sent:
            return SyncStatus.NOT_SENT
        if self.nonce_acked == self.nonce_sent:
            return SyncStatus.SYNCED
        if self.nonce_nacked == self.nonce_sent:
            return SyncStatus.ERROR
        return SyncStatus.STALE


def push_order(type_urls: Iterable[str]) -> list[str]:
    """CDS, EDS, LDS, RDS, SDS first (R29), then any other type in a stable order."""
    urls = set(type_urls)
    known = [t for t in PUSH_ORDER if t in urls]
    return known + sorted(urls - set(PUSH_ORDER))


def plan_pushes(
    states: Mapping[str, TypeState], snapshot: Snapshot, type_urls: Iterable[str]
) -> list[Response]:
    """Plan responses for the given types in push order; a CDS response also forces EDS (R28).

    The caller must ``record_sent`` each returned response, in order, before writing it.
    """
    targets = set(type_urls)
    responses = []
    for type_url in push_order(states):
        state = states[type_url]
        if type_url not in targets and not state.forced:
            continue
        response = state.plan(snapshot.resources(type_url), snapshot.version(type_url))
        if response is None:
            continue
        responses.append(response)
        if type_url == CLUSTER and ENDPOINT in states:
            states[ENDPOINT].force_resend()
    return responses
