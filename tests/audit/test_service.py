"""The access log service against hostile streams: it ends the stream, never the server, and keeps what is good."""

from __future__ import annotations

import datetime

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Metadata, Node
from envoy_data_plane.envoy.data.accesslog.v3 import (
    AccessLogCommon,
    HttpAccessLogEntry,
    HttpRequestProperties,
    HttpResponseProperties,
)
from envoy_data_plane.envoy.service.accesslog.v3 import (
    StreamAccessLogsMessage,
    StreamAccessLogsMessageHttpAccessLogEntries,
    StreamAccessLogsMessageIdentifier,
)
from envoy_data_plane.google.protobuf import Struct
from prometheus_client import CollectorRegistry

from controlplane.audit.query import Filters, ReadReport, read_records
from controlplane.audit.record import MAX_VALUE_CHARS
from controlplane.audit.service import AccessLogService, _parse
from controlplane.audit.sink import AuditMetrics, AuditSink, JsonLinesFile

NODE = "gateway~quickstart~agent-gateway"


class Aborted(Exception):
    pass


class Context:
    def __init__(self):
        self.code = None

    def auth_context(self):
        return {}

    def peer(self):
        return "ipv4:127.0.0.1:1"

    async def abort(self, code, message):
        self.code, self.message = code, message
        raise Aborted(message)


def authorize(peer, node):
    if node.id != NODE:
        raise PermissionError(f"node {node.id!r} is not yours")
    return node.id


@pytest.fixture
def sink(tmp_path):
    sink = AuditSink(JsonLinesFile(tmp_path / "audit.jsonl"), AuditMetrics(CollectorRegistry()))
    yield sink
    sink.close()


def written(sink) -> list[dict]:
    report = ReadReport()
    records = list(read_records([sink.file.path], Filters(), report))
    assert not report.problems
    return records


async def run(sink, messages) -> Context:
    async def stream():
        for message in messages:
            yield message

    context = Context()
    try:
        await AccessLogService(sink, authorize).stream_access_logs(stream(), context)
    except Aborted:
        pass
    return context


def identifier(node_id=NODE):
    return StreamAccessLogsMessageIdentifier(node=Node(id=node_id), log_name="gateway")


def entries(*items):
    return StreamAccessLogsMessageHttpAccessLogEntries(log_entry=list(items))


def entry(tool="get-sum", metadata=None, **request):
    mcp = Struct.from_dict({"method": "tools/call", "params": {"name": tool}, "id": 7})
    common = AccessLogCommon(start_time=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
                             metadata=Metadata(filter_metadata=metadata or {"envoy.filters.http.mcp": mcp}),
                             upstream_cluster="xbackend/quickstart/everything-mcp")
    return HttpAccessLogEntry(common_properties=common, request=HttpRequestProperties(**request),
                              response=HttpResponseProperties(response_code=200,
                                                              response_headers={"x-agentic-decision": "denied"}))


async def test_an_entry_becomes_a_record_named_by_the_proven_node(sink):
    context = await run(sink, [StreamAccessLogsMessage(identifier=identifier(), http_logs=entries(entry(
        request_id="r1", request_headers={"mcp-session-id": "s1"})))])
    assert context.code is None
    [record] = written(sink)
    assert (record["proxy"], record["role"], record["tool"], record["jsonrpc_id"], record["decision"],
            record["backend"], record["session_id"], record["time"]) == (
        NODE, "gateway", "get-sum", 7, "denied", "quickstart/everything-mcp", "s1", "2025-01-01T00:00:00.000Z")


async def test_an_empty_stream_writes_nothing_and_ends_cleanly(sink):
    assert (await run(sink, [])).code is None
    assert written(sink) == []


async def test_a_first_message_without_identifier_is_refused(sink):
    context = await run(sink, [StreamAccessLogsMessage(http_logs=entries(entry()))])
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT and written(sink) == []


async def test_a_node_the_certificate_does_not_prove_is_refused(sink):
    context = await run(sink, [StreamAccessLogsMessage(identifier=identifier("gateway~other~gw"),
                                                       http_logs=entries(entry()))])
    assert context.code is grpc.StatusCode.PERMISSION_DENIED and written(sink) == []


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff garbage", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x03\x0a\x01\xff"])
async def test_garbage_bytes_keep_what_was_good_and_write_nothing_of_their_own(sink, garbage):
    good = StreamAccessLogsMessage(identifier=identifier(), http_logs=entries(entry()))
    await run(sink, [good, _parse(garbage)])  # betterproto2 may read them as an (odd) message, or not at all
    assert len(written(sink)) == 1
    first = await run(sink, [_parse(garbage)])  # as a first message: no proven identifier
    assert first.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


async def test_a_message_that_does_not_parse_ends_the_stream(sink):
    from controlplane.audit.service import _Malformed

    context = await run(sink, [StreamAccessLogsMessage(identifier=identifier()), _Malformed("ValueError: bad")])
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT and written(sink) == []


async def test_garbage_metadata_gives_a_record_without_those_fields(sink):
    odd = {"envoy.filters.http.mcp": Struct.from_dict({"method": ["not", "a", "string"], "params": "flat",
                                                       "id": {"nested": True}}),
           "envoy.filters.http.rbac": Struct.from_dict({"gateway_shadow_effective_policy_id": 1e308 * 10})}
    await run(sink, [StreamAccessLogsMessage(identifier=identifier(), http_logs=entries(entry(metadata=odd)))])
    [record] = written(sink)
    assert (record["mcp_method"], record["tool"], record["jsonrpc_id"], record["gateway_rule"]) == (
        None, None, None, None)


async def test_huge_values_are_clipped(sink):
    huge = "x" * 500_000
    await run(sink, [StreamAccessLogsMessage(identifier=identifier(),
                                             http_logs=entries(entry(tool=huge, path=huge, request_id=huge)))])
    [record] = written(sink)
    assert len(record["tool"]) == len(record["path"]) == MAX_VALUE_CHARS + 3


async def test_a_later_identifier_does_not_change_the_proxy(sink):
    await run(sink, [StreamAccessLogsMessage(identifier=identifier()),
                     StreamAccessLogsMessage(identifier=identifier("gateway~other~gw"), http_logs=entries(entry()))])
    assert [r["proxy"] for r in written(sink)] == [NODE]


async def test_a_guardrail_block_names_the_policy_and_reason(sink):
    blocked = entry()
    blocked.response = HttpResponseProperties(response_code=200, response_headers={
        "x-agentic-decision": "blocked", "x-agentic-guardrail": "quickstart/secrets#private-key"})
    await run(sink, [StreamAccessLogsMessage(identifier=identifier(), http_logs=entries(blocked, entry()))])
    first, second = written(sink)
    assert (first["decision"], first["guardrail"]) == ("blocked", "quickstart/secrets#private-key")
    assert (second["decision"], second["guardrail"]) == ("denied", None)
