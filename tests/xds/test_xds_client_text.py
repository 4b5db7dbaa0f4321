"""Client-supplied bytes and text: malformed protobuf ends the stream with INVALID_ARGUMENT and one
log line; NACK details, node ids and names reach the log bounded and escaped, /debug/syncz bounded."""

from __future__ import annotations

import logging

import grpc

from controlplane.logs import DEBUG_LIMIT, LOG_LIMIT, clip
from controlplane.xds.resources import CLUSTER
from tests.xds.adsclient import METHOD
from tests.xds.xds_delta_client import DELTA_METHOD
from tests.xds.xds_helpers import snapshot_of, wait_for_status

# fields 1 and 2 hold bytes that are not UTF-8 where a string is due (DiscoveryRequest.version_info,
# DeltaDiscoveryRequest.type_url): betterproto2 raises on parse
MALFORMED = b"\x0a\x03\xff\xfe\xfd\x12\x03\xff\xfe\xfd"


async def _send_raw(port: int, method: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc = channel.stream_stream(method, request_serializer=bytes, response_deserializer=bytes)
        call = rpc(iter([body]))
        return await call.code(), await call.details()


async def test_malformed_request_is_invalid_argument_with_one_log_line(server, caplog):
    caplog.set_level(logging.INFO, logger="controlplane.xds")
    for method, message in ((METHOD, "DiscoveryRequest"), (DELTA_METHOD, "DeltaDiscoveryRequest")):
        caplog.clear()
        code, details = await _send_raw(server.port, method, MALFORMED)
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, f"malformed {message}")
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is None
        assert "\n" not in warnings[0].getMessage()
    assert server.registry.get_sample_value("xds_rejected_streams_total", {"reason": "malformed"}) == 2


async def test_malformed_request_later_in_the_stream_ends_it(server, connect, cache, caplog):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        caplog.clear()
        client._outbox.put_nowait(_Raw(MALFORMED))
        assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
        assert await client.call.details() == "malformed DiscoveryRequest"
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.WARNING]


class _Raw:
    """Bytes that the client's ``request_serializer=bytes`` sends as they are."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __bytes__(self) -> bytes:
        return self.body


async def test_nack_detail_is_bounded_and_escaped_in_logs_and_syncz(server, connect, cache, caplog):
    cache.set_snapshot("test-node\nFORGED", snapshot_of({CLUSTER: "A"}))
    detail = "bad\nFORGED LINE " + "x" * 100_000
    caplog.set_level(logging.INFO, logger="controlplane.xds")
    async with connect(node_id="test-node\nFORGED") as client:
        client.send(CLUSTER)
        await client.recv()
        client.nack(CLUSTER, error=detail)
        await wait_for_status(server, CLUSTER, "ERROR", node_id="test-node\nFORGED")
        kept = server.connections()[0].types[0].last_nack_error
    assert len(kept) < DEBUG_LIMIT + 50 and kept.startswith("bad\nFORGED") and kept.endswith(f"({len(detail)} bytes)")
    for record in caplog.records:
        line = record.getMessage()
        assert "\n" not in line and len(line) < 4 * LOG_LIMIT
    nack = next(r.getMessage() for r in caplog.records if "NACK" in r.getMessage())
    assert "test-node\\nFORGED" in nack and "bad\\nFORGED LINE" in nack and nack.endswith(f"({len(detail)} bytes)")


def test_clip_escapes_control_characters_and_says_how_long_the_original_was():
    assert clip("a\nb\r\x1b[31m") == "a\\nb\\r\\x1b[31m"
    assert clip("x" * 600, 10) == "xxxxxxxxxx... (600 bytes)"
    assert clip("é" * 3) == "\\xe9\\xe9\\xe9"
