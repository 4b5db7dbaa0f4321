"""One incremental (delta) ADS stream: DeltaDiscoveryRequests and snapshot changes in,
ordered DeltaDiscoveryResponses out.

It shares the SotW stream's loop (one inbox, requests and snapshot changes handled one
at a time, no locks) and swaps the protocol: a ``DeltaTypeState`` per type URL
(delta.py). Responses are concatenated from each resource's cached ``Any`` bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from controlplane.xds.delta import (
    DeltaKind,
    DeltaRequest,
    DeltaResponse,
    DeltaTypeState,
    RemovalPolicy,
    default_policy,
    plan_delta_pushes,
)
from controlplane.xds.resources import short_name
from controlplane.xds.stream import AdsStream, TypeInfo
from controlplane.xds.wire import encode_delta_discovery_response, encode_delta_resource


def to_delta_request(message: Any) -> DeltaRequest:
    """Reduce a betterproto2 DeltaDiscoveryRequest to the protocol's view of it."""
    error = message.error_detail
    error_message = None
    if error is not None:
        error_message = error.message or f"error code {error.code}"
    return DeltaRequest(
        type_url=message.type_url,
        subscribe=tuple(message.resource_names_subscribe),
        unsubscribe=tuple(message.resource_names_unsubscribe),
        initial_versions=dict(message.initial_resource_versions),
        response_nonce=message.response_nonce,
        error_message=error_message,
    )


class DeltaAdsStream(AdsStream):
    """Serves one delta ADS client for the lifetime of its stream."""

    variant = "delta"

    def __init__(self, *, policies: Mapping[str, RemovalPolicy] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policies = dict(policies or {})
        self.states: dict[str, DeltaTypeState] = {}  # type: ignore[assignment]

    @staticmethod
    def _to_request(message: Any) -> DeltaRequest:
        return to_delta_request(message)

    @staticmethod
    def _names_in(request: DeltaRequest) -> int:
        return len(request.subscribe) + len(request.unsubscribe) + len(request.initial_versions)

    def _names_after(self, request: DeltaRequest) -> int:
        state = self.states.get(request.type_url)
        current = state.subscription.names if state is not None else frozenset()
        return len((set(current) | set(request.subscribe)) - set(request.unsubscribe) - {"*"})

    def _new_state(self, type_url: str) -> DeltaTypeState:
        return DeltaTypeState(type_url, self._policies.get(type_url) or default_policy(type_url))

    @staticmethod
    def _answers(kind: DeltaKind) -> bool:
        return True  # R10: a stale nonce never stops a subscription change from being served

    def _plan(self, snapshot: Any, type_urls: Any) -> list[DeltaResponse]:
        return plan_delta_pushes(self.states, snapshot, type_urls)

    def _encode(self, response: DeltaResponse, nonce: str) -> bytes:
        return encode_delta_discovery_response(
            system_version_info=response.system_version_info,
            resources=[encode_delta_resource(name=r.name, version=r.version, any_bytes=r.any_bytes)
                       for r in response.resources],
            type_url=response.type_url, removed_resources=response.removed, nonce=nonce,
            control_plane_id=self._control_plane_id)

    def _count(self, response: DeltaResponse, label: str) -> None:
        self._metrics.delta_resources_sent.labels(label).inc(len(response.resources))
        self._metrics.delta_resources_removed.labels(label).inc(len(response.removed))

    def _account(self, state: DeltaTypeState, kind: DeltaKind, request: DeltaRequest) -> None:  # type: ignore[override]
        label = short_name(state.type_url)
        if kind is DeltaKind.NACK:
            self._record_nack(label, f"nonce {request.response_nonce}", request.error_message)
            if request.response_nonce == state.nonce_sent:  # about what the proxy was last sent
                self._ack_log.outcome("NACK", label, state.version_sent, state.sent_stamp, request.error_message)
                self._cache.report_nack(self.node_key, state.type_url, "", request.error_message or "")
        elif kind is DeltaKind.ACK:
            self._record_ack(state, label, converged=request.response_nonce == state.nonce_sent)

    @staticmethod
    def _type_info(state: Any) -> TypeInfo:
        return dataclasses.replace(
            AdsStream._type_info(state),
            resources_sent=tuple(sorted(state.sent.items())),
            resources_acked=tuple(sorted(state.acked.items())),
            resources_rejected=tuple(sorted(state.rejected.items())),
        )
