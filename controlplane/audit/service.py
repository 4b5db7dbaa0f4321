"""Envoy's gRPC access log service (`envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`).

Served on the xDS port with the same mTLS (controller.py hands its handler to the xDS server), so a
proxy reaches it over its bootstrap's `xds_cluster` (features/access_log.py). The first message of a
stream names the proxy (`identifier.node`, `identifier.log_name`: the proxy's role); the node is checked
against the peer certificate as an ADS stream's is (`authorize`), so nobody writes records in a proxy's
name but that proxy. Every later message carries HTTP entries, turned into records (record.py) and handed
to the sink (sink.py).

Hostile input ends at most its own stream, never the server: bytes that are not a message, a first message
without identifier, a foreign node: the stream ends with INVALID_ARGUMENT or PERMISSION_DENIED and one
warning line; an entry whose fields do not fit is skipped and counted; a message larger than gRPC's
receive limit (4 MiB) is refused by grpc itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy_data_plane.envoy.service.accesslog.v3 import StreamAccessLogsMessage, StreamAccessLogsResponse

from controlplane.audit.record import from_entry, normalize
from controlplane.audit.sink import AuditSink
from controlplane.logs import clip
from controlplane.xds.peer import peer_identity

__all__ = ["SERVICE", "AccessLogService"]

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
MAX_LOG_NAME_CHARS = 64
Authorize = Callable[[str | None, Any], str]  # (peer identity, node) -> node id, or PermissionError


class _Malformed:
    def __init__(self, error: str) -> None:
        self.error = error


def _parse(data: bytes) -> StreamAccessLogsMessage | _Malformed:
    try:
        return StreamAccessLogsMessage.parse(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed message
        return _Malformed(f"{type(exc).__name__}: {exc}")


class StreamRefused(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


class AccessLogService:
    """Writes every HTTP access log entry of authorized proxies to `sink`."""

    def __init__(self, sink: AuditSink, authorize: Authorize) -> None:
        self._sink = sink
        self._authorize = authorize

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
                self.stream_access_logs, request_deserializer=_parse,
                response_serializer=lambda response: bytes(response)),
        })

    async def stream_access_logs(self, messages: AsyncIterator[Any], context: Any) -> StreamAccessLogsResponse:
        peer = peer_identity(context.auth_context())
        try:
            await self._consume(messages, peer)
        except StreamRefused as refused:
            self._sink.metrics.rejected.labels(refused.reason).inc()
            log.warning("access log stream from %s (%s) refused: %s", clip(peer), context.peer(), clip(refused))
            await context.abort(refused.code, str(refused))
        return StreamAccessLogsResponse()

    async def _consume(self, messages: AsyncIterator[Any], peer: str | None) -> None:
        proxy = role = None
        async for message in messages:
            if isinstance(message, _Malformed):
                raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "malformed", f"malformed message: {message.error}")
            if proxy is None:
                proxy, role = self._identify(message, peer)
            self._sink.write(self._records(message, proxy, role))

    def _identify(self, message: StreamAccessLogsMessage, peer: str | None) -> tuple[str, str]:
        """The proxy and role a stream's first message claims, once its certificate proves them."""
        identifier = message.identifier
        if identifier is None or identifier.node is None:
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "no_identifier",
                                "the first message carries no identifier.node")
        try:
            proxy = self._authorize(peer, identifier.node)
        except (PermissionError, ValueError) as err:
            raise StreamRefused(grpc.StatusCode.PERMISSION_DENIED, "unauthorized", str(err)) from None
        return proxy, identifier.log_name[:MAX_LOG_NAME_CHARS]

    def _records(self, message: StreamAccessLogsMessage, proxy: str, role: str) -> list[dict[str, Any]]:
        entries = message.http_logs.log_entry if message.http_logs is not None else []
        records = []
        for entry in entries:
            if entry.request is None and entry.response is None:  # Envoy always sends both: not a request
                self._sink.metrics.rejected.labels("empty_entry").inc()
                continue
            try:
                records.append(normalize(from_entry(entry, proxy=proxy, role=role)))
            except Exception as exc:  # noqa: BLE001 - one odd entry is skipped, the stream goes on
                self._sink.metrics.rejected.labels("malformed_entry").inc()
                log.warning("skipped an access log entry from %s: %s", clip(proxy), clip(exc))
        return records
