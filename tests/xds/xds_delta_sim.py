"""A synchronous stand-in for the delta stream loop, driving delta.DeltaTypeState in table tests."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.xds.cache import Snapshot
from controlplane.xds.delta import (
    DeltaKind,
    DeltaRequest,
    DeltaResponse,
    DeltaTypeState,
    RemovalPolicy,
    plan_delta_pushes,
)


class DeltaSim:
    """Drives DeltaTypeStates as the server's delta stream does, synchronously, with a nonce counter."""

    def __init__(self, snapshot: Snapshot | None = None, policies: Mapping[str, RemovalPolicy] | None = None):
        self.states: dict[str, DeltaTypeState] = {}
        self.snapshot = snapshot
        self.policies = dict(policies or {})
        self.nonce = 0
        self.kinds: list[DeltaKind] = []
        self.last_nonce: dict[str, str] = {}

    def request(
        self,
        type_url: str,
        subscribe=(),
        unsubscribe=(),
        *,
        nonce: str = "",
        initial: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> list[DeltaResponse]:
        """A request; by default spontaneous (no nonce). See ``ack``/``nack`` for answers."""
        state = self.states.get(type_url)
        if state is None:
            state = self.states[type_url] = DeltaTypeState(type_url, self.policies.get(type_url))
        kind = state.on_request(
            DeltaRequest(type_url, tuple(subscribe), tuple(unsubscribe), dict(initial or {}), nonce, error)
        )
        self.kinds.append(kind)
        if self.snapshot is None:
            return []
        return self._send(plan_delta_pushes(self.states, self.snapshot, [type_url]))

    def ack(
        self, type_url: str, subscribe=(), unsubscribe=(), *, nonce: str | None = None
    ) -> list[DeltaResponse]:
        return self.request(type_url, subscribe, unsubscribe, nonce=nonce or self.last_nonce[type_url])

    def nack(
        self, type_url: str, error: str = "rejected", *, nonce: str | None = None
    ) -> list[DeltaResponse]:
        return self.request(type_url, nonce=nonce or self.last_nonce[type_url], error=error)

    def set_snapshot(self, snapshot: Snapshot) -> list[DeltaResponse]:
        self.snapshot = snapshot
        return self._send(plan_delta_pushes(self.states, snapshot, self.states))

    def _send(self, responses: list[DeltaResponse]) -> list[DeltaResponse]:
        for response in responses:
            self.nonce += 1
            self.states[response.type_url].record_sent(response, str(self.nonce))
            self.last_nonce[response.type_url] = str(self.nonce)
        return responses


def summary(responses: list[DeltaResponse]) -> list[tuple[str, list[str], list[str]]]:
    """[(short type, upserted names, removed names)] — the shape table tests compare."""
    from controlplane.xds.resources import short_name

    return [(short_name(r.type_url), [x.name for x in r.resources], list(r.removed)) for r in responses]
