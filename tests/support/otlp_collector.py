"""A tiny OTLP/gRPC collector for tests: keeps the spans and log records Envoy exports, flattened.

Real wire protocol (the `opentelemetry-proto` messages over gRPC, HTTP/2 plaintext), served on its own
threads (a synchronous grpc server) so that a test blocking in `wait_until` never starves it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


@dataclass
class Exported:
    """One span or log record: its resource's and its own attributes as strings, and its name or body."""

    resource: dict[str, str]
    attributes: dict[str, str]
    text: str  # a span's name, a log record's body


@dataclass
class OtlpCollector:
    port: int = 0
    spans: list[Exported] = field(default_factory=list)
    logs: list[Exported] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def export_traces(self, request, context):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        found = [Exported(_values(rs.resource.attributes), _values(span.attributes), span.name)
                 for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        with self._lock:
            self.spans += found
        return ExportTraceServiceResponse()

    def export_logs(self, request, context):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        found = [Exported(_values(rl.resource.attributes), _values(record.attributes), _value(record.body))
                 for rl in request.resource_logs for sl in rl.scope_logs for record in sl.log_records]
        with self._lock:
            self.logs += found
        return ExportLogsServiceResponse()

    def snapshot(self) -> tuple[list[Exported], list[Exported]]:
        with self._lock:
            return list(self.spans), list(self.logs)


def _values(attributes) -> dict[str, str]:
    return {kv.key: _value(kv.value) for kv in attributes}


def _value(any_value) -> str:
    kind = any_value.WhichOneof("value")
    return "" if kind is None else str(getattr(any_value, kind))


@contextmanager
def serve_otlp_collector(*, host: str = "127.0.0.1", port: int = 0) -> Iterator[OtlpCollector]:
    """Serve TraceService/Export and LogsService/Export until the block exits."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = OtlpCollector()

    def unary(behaviour, request_type):
        return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=request_type.FromString,
                                                   response_serializer=lambda m: m.SerializeToString())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(TRACE_SERVICE, {
            "Export": unary(collector.export_traces, ExportTraceServiceRequest)}),
        grpc.method_handlers_generic_handler(LOGS_SERVICE, {
            "Export": unary(collector.export_logs, ExportLogsServiceRequest)}),
    ))
    collector.port = server.add_insecure_port(f"{host}:{port}")
    server.start()
    try:
        yield collector
    finally:
        server.stop(grace=1)
