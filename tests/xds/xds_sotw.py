"""A synchronous stand-in for the server's stream loop, driving protocol.TypeState in tests."""

from __future__ import annotations

from controlplane.xds.cache import Snapshot
from controlplane.xds.protocol import Request, RequestKind, Response, TypeState, plan_pushes


class Stream:
    """Drives TypeStates the way the server's stream does, synchronously, with a nonce counter."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.states: dict[str, TypeState] = {}
        self.snapshot = snapshot
        self.nonce = 0
        self.kinds: list[RequestKind] = []

    def request(
        self,
        type_url: str,
        names=(),
        *,
        nonce: str | None = None,
        error: str | None = None,
        version: str | None = None,
    ) -> list[Response]:
        """Send a request; by default it ACKs the last response of the type (its nonce and version)."""
        state = self.states.setdefault(type_url, TypeState(type_url))
        request = Request(
            type_url=type_url,
            resource_names=tuple(names),
            version_info=state.version_sent if version is None else version,
            response_nonce=state.nonce_sent if nonce is None else nonce,
            error_message=error,
        )
        kind = state.on_request(request)
        self.kinds.append(kind)
        if kind is RequestKind.STALE or self.snapshot is None:
            return []
        return self._send(plan_pushes(self.states, self.snapshot, [type_url]))

    def set_snapshot(self, snapshot: Snapshot) -> list[Response]:
        self.snapshot = snapshot
        return self._send(plan_pushes(self.states, snapshot, self.states))

    def _send(self, responses: list[Response]) -> list[Response]:
        for response in responses:
            self.nonce += 1
            self.states[response.type_url].record_sent(response, str(self.nonce))
        return responses
