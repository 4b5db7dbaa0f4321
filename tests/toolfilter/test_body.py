"""tools/list bodies, well-formed and hostile: filtered and valid MCP, untouched, or refused; never a crash."""

from __future__ import annotations

import gzip
import json

import pytest

from controlplane.toolfilter.body import MAX_BODY_BYTES, MAX_TOOLS, REFUSED_CODE, filter_body

TOOLS = [{"name": "get-sum", "description": "adds", "inputSchema": {"type": "object"}, "annotations": {"x": 1}},
         {"name": "echo", "description": "echoes"}, {"name": "get-env"}]
ALLOWED = {"get-sum", "echo"}


def may_call(tool: str) -> bool:
    return tool in ALLOWED


def result(tools=TOOLS, **extra) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "result": {"tools": tools, "nextCursor": "c2", **extra}}


def run(body: bytes, content_type="application/json", encoding=None):
    return filter_body(body, content_type=content_type, content_encoding=encoding, may_call=may_call, request_id=7)


def test_json_keeps_allowed_tools_with_every_field_and_the_result_fields():
    out = run(json.dumps(result()).encode())
    message = json.loads(out.body)
    assert out.changed and (out.kept, out.removed) == (2, 1)
    assert message["result"]["tools"] == TOOLS[:2] and message["result"]["nextCursor"] == "c2"
    assert message["id"] == 7 and message["jsonrpc"] == "2.0"


def test_sse_rewrites_only_the_result_event_and_keeps_the_others():
    note = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n'
    body = (note + "event: message\nid: 4\ndata: " + json.dumps(result()) + "\n\n").encode()
    out = run(body, "text/event-stream; charset=utf-8")
    text = out.body.decode()
    assert text.startswith(note) and "id: 4\n" in text and text.endswith("\n\n")
    data = [line[6:] for line in text.split("\n") if line.startswith("data: ")][-1]
    assert [t["name"] for t in json.loads(data)["result"]["tools"]] == ["get-sum", "echo"]


def test_sse_data_split_over_lines_and_crlf_is_read_as_one_message():
    payload = json.dumps(result(), indent=1).replace("\n", "\r\ndata: ")
    out = run(("event: message\r\ndata: " + payload + "\r\n\r\n").encode(), "text/event-stream")
    data = [line[6:] for line in out.body.decode().split("\n") if line.startswith("data: ")]
    assert len(data) == 1 and len(json.loads(data[0])["result"]["tools"]) == 2


@pytest.mark.parametrize("body, content_type", [
    (b'{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no"}}', "application/json"),  # an error
    (b'{"jsonrpc":"2.0","id":7,"result":{}}', "application/json"),  # not a tools result
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":[', "application/json"),  # truncated JSON
    (b"", "application/json"),
    (b"\xff\xfe not utf-8", "text/event-stream"),
    (b"[1,2]", "application/json"),
    (json.dumps(result()).encode(), "text/plain"),  # a content type that is not MCP's
    (json.dumps(result()).encode(), ""),
    (b"event: ping\n\n", "text/event-stream"),
    (b"[" * 100_000, "application/json"),  # nesting past the parser's recursion limit
])
def test_what_is_not_a_tools_list_result_passes_untouched(body, content_type):
    out = run(body, content_type)
    assert not out.changed and out.body == body and out.refused is None


@pytest.mark.parametrize("body, why", [
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get-env"}],"tools":[]}}', "duplicate"),
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","name":"get-env"}]}}', "duplicate"),
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":{"name":"get-env"}}}', "not an array"),
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":3}]}}', "string name"),
    (b'{"jsonrpc":"2.0","id":7,"result":{"tools":["get-env"]}}', "string name"),
])
def test_an_ambiguous_tools_list_is_refused_as_a_json_rpc_error(body, why):
    out = run(body)
    assert out.changed and why in out.refused
    assert json.loads(out.body) == {"jsonrpc": "2.0", "id": 7, "error": {"code": REFUSED_CODE,
                                                                          "message": out_message(out)}}
    assert b"get-env" not in out.body


def out_message(out) -> str:
    return json.loads(out.body)["error"]["message"]


def test_a_refused_sse_list_is_an_sse_event():
    body = b'event: message\ndata: {"id":7,"result":{"tools":[{"name":"a","name":"b"}]}}\n\n'
    out = run(body, "text/event-stream")
    assert out.body.startswith(b"event: message\ndata: {") and out.body.endswith(b"\n\n")


def test_a_huge_list_is_decided_up_to_the_limit_and_refused_past_it():
    many = [{"name": f"tool-{i}"} for i in range(MAX_TOOLS)] + [{"name": "echo"}]
    assert run(json.dumps(result(many[:MAX_TOOLS - 1] + [{"name": "echo"}])).encode()).kept == 1
    assert "more than" in run(json.dumps(result(many)).encode()).refused
    assert "over" in run(b" " * (MAX_BODY_BYTES + 1)).refused


def test_gzip_is_filtered_and_recompressed_and_bombs_or_junk_are_refused():
    out = run(gzip.compress(json.dumps(result()).encode()), encoding="gzip")
    assert out.content_encoding == "gzip" and len(json.loads(gzip.decompress(out.body))["result"]["tools"]) == 2
    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + 10))
    assert "inflates past" in run(bomb, encoding="gzip").refused
    assert "truncated" in run(gzip.compress(b"{}")[:-6], encoding="gzip").refused
    assert run(b"not gzip", encoding="gzip").refused
    refused = run(b"\x00", encoding="br")
    assert "br" in refused.refused and refused.content_encoding is None  # the error goes out unencoded


def test_a_caller_who_may_call_nothing_gets_an_empty_list_not_an_error():
    out = filter_body(json.dumps(result()).encode(), content_type="application/json", content_encoding=None,
                      may_call=lambda tool: False)
    assert json.loads(out.body)["result"]["tools"] == [] and out.removed == 3
