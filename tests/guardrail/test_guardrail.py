"""The reference guardrail: detectors, hostile bodies, the judge's decisions, and the ext_proc answers."""

from __future__ import annotations

import gzip
import json

import pytest

from controlplane.guardrail.detectors import BUILT_IN, custom_detector, detectors, first_match, luhn_valid
from controlplane.guardrail.judge import UNREADABLE, Exchange, Settings
from controlplane.guardrail.messages import MAX_BODY_BYTES, Unreadable, request_message, response_messages
from controlplane.guardrail.server import GuardrailService

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----"
FOUND = detectors()


def call(arguments, id=7, method="tools/call") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method,
                       "params": {"name": "echo", "arguments": arguments}}).encode()


def result(text: str, id=7) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}}).encode()


# --- detectors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "name"), [
    (KEY, "private-key"),
    ("-----BEGIN PRIVATE KEY-----", "private-key"),
    ("-----BEGIN EC PRIVATE KEY-----", "private-key"),
    ("id AKIAIOSFODNN7EXAMPLE here", "aws-access-key"),
    ('aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"', "aws-secret-key"),
    ("token ghp_" + "a" * 36, "api-token"),
    ("sk-proj-" + "Ab3_" * 6, "api-token"),
    ("xoxb-1234567890-abcdef", "api-token"),
    ("card 4111 1111 1111 1111 exp 12/30", "card-number"),
    ("5500-0000-0000-0004", "card-number"),
])
def test_each_built_in_detector_finds_its_secret(text, name):
    assert first_match([text], FOUND) == name


@pytest.mark.parametrize("text", [
    "-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----", "order 4111 1111 1111 1112",  # Luhn fails
    "timestamp 1717171717171", "12345678901234567890123",  # too long to be a card
    "AKIAshort", "the sum of 2 and 3 is 5", "sk-short",
])
def test_ordinary_text_passes(text):
    assert first_match([text], FOUND) is None


def test_luhn():
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112") and not luhn_valid("4111") and not luhn_valid("")


def test_custom_patterns_are_named_checked_and_never_shadow_a_built_in():
    found = detectors(["internal-host=corp\\.internal"])
    assert first_match(["see db.corp.internal"], found) == "internal-host"
    for bad, why in [("nameonly", "NAME=REGEX"), ("Bad_Name=x", "NAME=REGEX"), ("x=(", "not a regular expression"),
                     ("x=", "1 to"), ("private-key=x", "exists already"), ("x=" + "a" * 2000, "1 to")]:
        with pytest.raises(ValueError, match=why):
            detectors([bad])
    assert custom_detector("a=b").name == "a" and len(BUILT_IN) == 5


# --- hostile bodies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "why"), [
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"argu', "not JSON"),
    (b"\xff\xfe\x00binary", "not UTF-8"),
    (b"[" * 100_000, "too deeply|not JSON|nested"),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', "single JSON-RPC"),
    (b"", "not JSON"),
    (b"x" * (MAX_BODY_BYTES + 1), "over"),
    (gzip.compress(b"{" * 10) [:-4], "corrupt"),
    (gzip.compress(b" " * (MAX_BODY_BYTES + 10)), "decompressed"),
])
def test_hostile_request_bodies_are_unreadable_never_a_crash(body, why):
    with pytest.raises(Unreadable, match=why):
        request_message(body)


def test_deep_and_wide_values_are_bounded():
    deep = call({"a": json.loads("[" * 70 + "]" * 70)})
    with pytest.raises(Unreadable, match="deeper"):
        request_message(deep)
    with pytest.raises(Unreadable, match="strings"):
        request_message(call({"k": ["s"] * 100_001}))
    with pytest.raises(Unreadable, match="not readable"):
        request_message(call({}), "br")


def test_gzip_and_sse_bodies_are_read():
    assert request_message(gzip.compress(call({"m": KEY})), "gzip").strings == ("m", KEY)
    sse = b"event: message\nid: 1\ndata: " + result(KEY) + b"\n\n"
    [message] = response_messages(sse, "text/event-stream")
    assert message.id == 7 and KEY in message.strings
    multi = b"data: {\"jsonrpc\": \"2.0\",\ndata: \"method\": \"notifications/progress\", \"params\": {}}\n\n" + \
        b"data: " + result("ok") + b"\r\n\r\n"
    assert [m.method for m in response_messages(multi, "text/event-stream")] == ["notifications/progress", None]


# --- the judge --------------------------------------------------------------------------------------------

def test_arguments_and_results_are_judged_as_the_policy_says():
    both = Exchange(Settings(), FOUND)
    block = both.on_request(call({"message": KEY}))
    assert block.reason == "private-key" and block.phase == "request" and KEY not in block.message
    responses_only = Exchange(Settings(requests=False), FOUND)
    assert responses_only.on_request(call({"message": KEY})) is None
    assert responses_only.on_response(result(KEY), "application/json").reason == "private-key"
    assert Exchange(Settings(), FOUND).on_response(result("clean")) is None


def test_methods_not_judged_pass_unread_and_a_star_judges_every_method():
    listing = Exchange(Settings(), FOUND)
    assert listing.on_request(call({}, method="tools/list")) is None
    assert listing.on_response(b"\x00 garbage") is None  # not a judged method: passes unread
    star = Exchange(Settings(methods=("*",)), FOUND)
    assert star.on_request(call({"k": KEY}, method="prompts/get")).reason == "private-key"


def test_what_cannot_be_read_in_a_judged_exchange_is_blocked():
    assert Exchange(Settings(), FOUND).on_request(b"{truncated").reason == UNREADABLE
    exchange = Exchange(Settings(), FOUND)
    assert exchange.on_request(call({"m": "hi"})) is None
    assert exchange.on_response(gzip.compress(result(KEY))).reason == "private-key"  # sniffed gzip
    assert exchange.on_response(b"\x1f\x8bnot really gzip").reason == UNREADABLE


def test_settings_from_garbled_metadata_are_the_strictest():
    assert Settings.from_metadata({}) == Settings()
    assert Settings.from_metadata({"x-agentic-guardrail-inspect": "nonsense"}) == Settings()
    s = Settings.from_metadata({"x-agentic-guardrail-inspect": "responses", "x-agentic-guardrail-methods": " , ",
                                "x-agentic-guardrail-policy": "ns/p"})
    assert (s.requests, s.responses, s.methods, s.policy) == (False, True, ("tools/call",), "ns/p")


# --- the ext_proc answers ---------------------------------------------------------------------------------

def _stream(*messages):
    from envoy_data_plane.envoy.config.core.v3 import HeaderMap, HeaderValue
    from envoy_data_plane.envoy.service.ext_proc.v3 import HttpBody, HttpHeaders, ProcessingRequest

    out = []
    for kind, value in messages:
        if kind.endswith("headers"):
            headers = HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in value.items()])
            out.append(ProcessingRequest(**{kind: HttpHeaders(headers=headers)}))
        else:
            out.append(ProcessingRequest(**{kind: HttpBody(body=value, end_of_stream=True)}))
    return out


class _Context:
    def __init__(self, metadata=()):
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata


async def _answers(requests, metadata=()):
    from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

    async def source():
        for r in requests:
            yield r

    service = GuardrailService(FOUND)
    return [ProcessingResponse.parse(b) async for b in service.process(source(), _Context(metadata))], service


async def test_a_block_is_a_json_rpc_error_with_the_request_id_and_the_decision_header():
    answers, service = await _answers(_stream(("request_headers", {":method": "POST"}),
                                              ("request_body", call({"message": KEY}, id="abc"))))
    immediate = answers[-1].immediate_response
    assert immediate is not None and immediate.status.code.value == 200
    body = json.loads(immediate.body)
    assert body["id"] == "abc" and body["error"]["data"]["reason"] == "private-key" and KEY not in immediate.body.decode()
    headers = {h.header.key: h.header.raw_value.decode() for h in immediate.headers.set_headers}
    assert headers["x-agentic-decision"] == "blocked" and service.decisions == [("", "private-key")]
    assert headers["x-agentic-guardrail"] == "-#private-key"  # no policy in the stream's metadata


async def test_a_block_names_its_policy_and_reason_for_the_audit_record():
    answers, _ = await _answers(_stream(("request_headers", {":method": "POST"}),
                                        ("request_body", call({"message": KEY}))),
                                metadata=(("x-agentic-guardrail-policy", "quickstart/secrets"),))
    headers = {h.header.key: h.header.raw_value.decode() for h in answers[-1].immediate_response.headers.set_headers}
    assert headers["x-agentic-guardrail"] == "quickstart/secrets#private-key"


async def test_a_blocked_notification_keeps_a_plain_403():
    notification = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "params": {"arguments": {"k": KEY}}})
    answers, _ = await _answers(_stream(("request_headers", {}), ("request_body", notification.encode())))
    assert answers[-1].immediate_response.status.code.value == 403 and answers[-1].immediate_response.body == b""


async def test_a_clean_exchange_continues_at_every_phase_and_a_get_skips_its_bodies():
    answers, service = await _answers(_stream(
        ("request_headers", {":method": "POST"}), ("request_body", call({"m": "hi"})),
        ("response_headers", {"content-type": "application/json"}), ("response_body", result("fine"))))
    assert [a.immediate_response for a in answers] == [None] * 4 and answers[0].mode_override is None
    assert service.decisions == [("", None), ("", None)]
    [get] = (await _answers(_stream(("request_headers", {":method": "GET"}))))[0]
    assert get.mode_override.response_body_mode.name == "NONE"


async def test_a_message_out_of_protocol_ends_the_stream_with_an_error():
    from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingRequest

    with pytest.raises(ValueError, match="does not handle"):
        await _answers([ProcessingRequest()])
