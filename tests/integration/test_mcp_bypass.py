"""Adversarial JSON-RPC bodies through a real Envoy and the real MCP test server: a denied tool never runs.

The bypass these close (seen before the fix): Envoy's MCP filter parsed only the first 8 KiB and kept
the last duplicate key it saw, while the MCP server reads the whole body and keeps the last duplicate.
An allowed tool name, padding past 8 KiB, then a second `"name":"echo"` ran echo for math-agent (granted
only get-sum); intern-agent (no tools) ran tools with `"method":"ping"`, padding, `"method":"tools/call"`.

Each shape is sent on an open MCP session (so the server would really run it) and judged on three
records: the server's own list of tools it ran (`--tool-log`), the response (the denied tool's result text
never appears), and Envoy's access-log line (a tool that ran is the tool logged; else Envoy refused it).
"""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.translate.features.mcp import MAX_REQUEST_BODY_BYTES
from tests.support.mcp_client import BASE_HEADERS, INITIALIZE_PARAMS, tls_context
from tests.support.mesh import QUICKSTART, LocalMesh
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

DEFAULT_WINDOW = 8192  # the MCP filter's default parse window, where the original bypass lived
# Offsets (in bytes) at which the second, decisive key starts: around every limit.
OFFSETS = [100, DEFAULT_WINDOW - 20, DEFAULT_WINDOW, DEFAULT_WINDOW + 20, 9000,
           MAX_REQUEST_BODY_BYTES - 200, MAX_REQUEST_BODY_BYTES + 100]
SERVICE_ROUTE = """\
# A route to the MCP server as a plain Service (no XBackend): the MCP filter passes non-MCP traffic here.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: service-route, namespace: quickstart}
spec:
  parentRefs: [{name: agent-gateway}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /svc/mcp}}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /mcp}}
      backendRefs: [{name: everything, port: 3001}]
"""


class Gateway:
    """One agent's open MCP session through the gateway, and what each request left behind."""

    def __init__(self, mesh: LocalMesh, agent: str):
        self.mesh = mesh
        cert, key = mesh.identity(agent)
        self.context = tls_context(cert=cert, key=key)
        self.session = self._open_session()

    def _client(self, http2: bool = False) -> httpx2.Client:
        return httpx2.Client(verify=self.context, http2=http2, trust_env=False, timeout=30)

    def _open_session(self) -> str:
        opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE_PARAMS}
        with self._client() as client:
            answer = client.post(self.mesh.url, headers=BASE_HEADERS, content=json.dumps(opening))
            session = answer.headers["mcp-session-id"]
            client.post(self.mesh.url, headers=dict(BASE_HEADERS, **{"mcp-session-id": session}),
                        content='{"jsonrpc":"2.0","method":"notifications/initialized"}')
        return session

    def send(self, body: bytes, *, content_type: str | None = "application/json", http2: bool = False,
             chunked: bool = False, path: str = "/tools/mcp") -> Exchange:
        probe = uuid.uuid4().hex
        headers = dict(BASE_HEADERS, **{"mcp-session-id": self.session})
        headers.pop("Content-Type")
        if content_type is not None:
            headers["Content-Type"] = content_type
        content = (body[i:i + 16384] for i in range(0, len(body), 16384)) if chunked else body
        ran_before = len(self.mesh.tools_run())
        url = self.mesh.url.replace("/tools/mcp", path) + f"?probe={probe}"
        with self._client(http2) as client:
            try:
                response = client.post(url, headers=headers, content=content)
                status, version, text = response.status_code, response.http_version, response.text
            except httpx2.LocalProtocolError:  # Envoy answered and reset the HTTP/2 stream mid-upload
                status, version, text = 0, "HTTP/2", ""
        return Exchange(status, version, text, self._log_entry(probe), self.mesh.tools_run()[ran_before:])

    def _log_entry(self, probe: str) -> dict:
        found: list[dict] = []

        def logged() -> bool:
            for line in self.mesh.log("envoy.log").splitlines():
                if line.startswith("{") and probe in line:
                    found.append(json.loads(line))
                    return True
            return False

        wait_until(logged, timeout=10, what=f"access log line of probe {probe}")
        return found[0]


class Exchange:
    def __init__(self, status: int, http_version: str, text: str, log: dict, ran: list[dict]):
        self.status, self.http_version, self.text, self.log, self.ran = status, http_version, text, log, ran

    def __repr__(self) -> str:
        return f"<{self.status} {self.http_version} ran={self.ran} log={self.log} body={self.text[:200]!r}>"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    config = tmp_path_factory.mktemp("config")
    for path in QUICKSTART.glob("*.yaml"):
        (config / path.name).write_text(path.read_text())
    (config / "40-service-route.yaml").write_text(SERVICE_ROUTE)
    with LocalMesh(tmp_path_factory.mktemp("mesh"), config=config) as running:
        yield running


@pytest.fixture(scope="module")
def math(mesh):
    return Gateway(mesh, "math-agent")


@pytest.fixture(scope="module")
def intern(mesh):
    return Gateway(mesh, "intern-agent")


# --- bodies ----------------------------------------------------------------------------------------------

def call(name: str = "echo", *, nonce: str = "", method: str = "tools/call", extra: str = "") -> str:
    return ('{"jsonrpc":"2.0","id":7,"method":"' + method + '","params":{"name":"' + name + '",'
            '"arguments":{"message":"' + nonce + '","a":1,"b":2}' + extra + '}}')


def padded(prefix: str, decisive: str, suffix: str, *, offset: int) -> str:
    """`prefix`, a padding member, then `decisive` starting at byte `offset`, then `suffix`."""
    member = '"pad":"",'
    fill = max(0, offset - len(prefix) - len(member))
    return prefix + member.replace('""', '"' + "x" * fill + '"') + decisive + suffix


def duplicate_name(nonce: str, offset: int) -> str:
    return padded('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum",',
                  '"name":"echo"', ',"arguments":{"message":"' + nonce + '","a":1,"b":2}}}', offset=offset)


def duplicate_method(nonce: str, offset: int) -> str:
    return padded('{"jsonrpc":"2.0","id":7,"method":"ping",', '"method":"tools/call"',
                  ',"params":{"name":"echo","arguments":{"message":"' + nonce + '"}}}', offset=offset)


def duplicate_params(nonce: str, offset: int) -> str:
    return padded('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum",'
                  '"arguments":{"a":1,"b":2}},', '"params":{"name":"echo","arguments":{"message":"' + nonce + '"}}',
                  "}", offset=offset)


def duplicate_nested(nonce: str, offset: int) -> str:
    return padded('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum",'
                  '"arguments":{"a":1,"b":2},"_meta":{"k":1,', '"k":2}', ',"name":"echo","x":"' + nonce + '"}}',
                  offset=offset)


def assert_never_ran(exchange: Exchange, denied: set[str], nonce: str) -> None:
    assert not [r for r in exchange.ran if r["tool"] in denied], exchange
    assert f"Echo: {nonce}" not in exchange.text, exchange
    for run in exchange.ran:  # whatever ran is what the gateway decided on and logged
        assert exchange.log["mcp_method"] == "tools/call" and exchange.log["tool"] == run["tool"], exchange


def assert_refused(exchange: Exchange, details: str) -> None:
    assert exchange.status == 400 and exchange.log["details"] == details and not exchange.ran, exchange


# --- duplicate keys at every offset ------------------------------------------------------------------------

@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("shape", [duplicate_name, duplicate_params, duplicate_nested])
def test_duplicate_keys_never_run_the_denied_tool(math, shape, offset):
    nonce = uuid.uuid4().hex
    exchange = math.send(shape(nonce, offset).encode())
    assert_never_ran(exchange, {"echo"}, nonce)
    too_large = offset > MAX_REQUEST_BODY_BYTES
    assert_refused(exchange, "mcp_body_too_large" if too_large else "mcp_duplicate_keys")


@pytest.mark.parametrize("offset", OFFSETS)
def test_duplicate_method_never_lets_a_toolless_agent_call(intern, offset):
    nonce = uuid.uuid4().hex
    exchange = intern.send(duplicate_method(nonce, offset).encode())
    assert_never_ran(exchange, {"echo", "get-sum"}, nonce)
    assert_refused(exchange, "mcp_body_too_large" if offset > MAX_REQUEST_BODY_BYTES else "mcp_duplicate_keys")


@pytest.mark.parametrize("transport", ["chunked", "http2"])
def test_the_original_bypass_is_refused_over_every_transport(math, transport):
    nonce = uuid.uuid4().hex
    exchange = math.send(duplicate_name(nonce, 8300).encode(), chunked=transport == "chunked",
                         http2=transport == "http2")
    assert exchange.http_version == ("HTTP/2" if transport == "http2" else "HTTP/1.1")
    assert_never_ran(exchange, {"echo"}, nonce)
    assert_refused(exchange, "mcp_duplicate_keys")


# --- batches, lookalikes, escapes ------------------------------------------------------------------------

def test_a_batch_mixing_allowed_and_denied_calls_is_refused(math):
    nonce = uuid.uuid4().hex
    batch = "[" + call("get-sum") + "," + call("echo", nonce=nonce).replace('"id":7', '"id":8') + "]"
    exchange = math.send(batch.encode())
    assert_never_ran(exchange, {"echo", "get-sum"}, nonce)
    assert_refused(exchange, "mcp_not_jsonrpc")


@pytest.mark.parametrize("agent, body, logged_tool", [
    ("math", call("Echo"), "Echo"),
    ("math", call("ech\\u043e"), "ech\u043e"),              # Cyrillic o: another name, on both sides
    ("math", call("\\u0065cho"), "echo"),                    # Envoy decodes escapes in values, as the server
    ("intern", call(method="tools\\/call"), "echo"),         # escaped slash: still tools/call to Envoy
    ("intern", call(method="tools/Call"), None),             # not a method Envoy knows: no tool extracted
])
def test_lookalikes_and_escaped_values_are_judged_as_the_server_reads_them(math, intern, agent, body, logged_tool):
    nonce = uuid.uuid4().hex
    gateway = math if agent == "math" else intern
    exchange = gateway.send(body.replace('"message":""', f'"message":"{nonce}"').encode())
    assert_never_ran(exchange, {"echo", "get-sum", "Echo", "ech\u043e"}, nonce)
    assert exchange.log["tool"] == logged_tool, exchange
    assert exchange.status == 200 and '"code":403' in exchange.text, exchange  # the JSON-RPC denial


@pytest.mark.parametrize("body", [
    ('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","n\\u0061me":"echo",'
     '"arguments":{"message":"NONCE"}}}'),
    ('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}},'
     '"p\\u0061rams":{"name":"echo","arguments":{"message":"NONCE"}}}'),
])
def test_escaped_duplicate_keys_are_duplicates(math, body):
    nonce = uuid.uuid4().hex
    exchange = math.send(body.replace("NONCE", nonce).encode())
    assert_never_ran(exchange, {"echo"}, nonce)
    assert_refused(exchange, "mcp_duplicate_keys")


def test_escaped_method_key_is_a_duplicate(intern):
    nonce = uuid.uuid4().hex
    body = ('{"jsonrpc":"2.0","id":7,"method":"ping","m\\u0065thod":"tools/call",'
            '"params":{"name":"echo","arguments":{"message":"' + nonce + '"}}}')
    exchange = intern.send(body.encode())
    assert_never_ran(exchange, {"echo"}, nonce)
    assert_refused(exchange, "mcp_duplicate_keys")


# --- content types, framing, size -----------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_types_are_not_mcp(math, content_type):
    nonce = uuid.uuid4().hex
    for body in (call("echo", nonce=nonce), duplicate_name(nonce, 8300)):
        exchange = math.send(body.encode(), content_type=content_type)
        assert_never_ran(exchange, {"echo"}, nonce)
        assert_refused(exchange, "mcp_reject_no_mcp")


@pytest.mark.parametrize("body, details", [
    (call("get-sum") + '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo"}}',
     "mcp_not_jsonrpc"),                                                           # trailing garbage
    ("\ufeff" + call("echo"), "mcp_parse_error"),                                  # byte order mark
    (call("get-sum", extra=',"pad":"' + "x" * MAX_REQUEST_BODY_BYTES + '"'), "mcp_body_too_large"),
])
def test_malformed_and_oversize_bodies_are_refused(math, body, details):
    exchange = math.send(body.encode())
    assert_refused(exchange, details)
    if details == "mcp_body_too_large":
        assert exchange.log["mcp_partial"] is True  # the operator sees the body was parsed in part


def test_whitespace_padding_is_parsed_and_judged(math):
    nonce = uuid.uuid4().hex
    denied = math.send((" " * 9000 + call("echo", nonce=nonce) + "\n" * 9000).encode())
    assert_never_ran(denied, {"echo"}, nonce)
    assert denied.log["tool"] == "echo" and '"code":403' in denied.text, denied
    allowed = math.send((" " * 9000 + call("get-sum")).encode())
    assert [r["tool"] for r in allowed.ran] == ["get-sum"] and allowed.log["tool"] == "get-sum", allowed


def test_real_tool_calls_well_past_8_kib_still_work(math, intern):
    big = math.send(call("get-sum", extra=',"pad":"' + "x" * 500_000 + '"').encode(), http2=True)
    assert big.status == 200 and [r["tool"] for r in big.ran] == ["get-sum"], big
    assert "The sum of 1 and 2 is 3." in big.text
    ping = intern.send(b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{}}')
    assert ping.status == 200 and '"result"' in ping.text, ping


# --- routes to plain Services: PASS_THROUGH, with RBAC as the second lock -------------------------------

def test_a_service_route_passes_non_mcp_traffic_but_denies_what_was_parsed_in_part(math):
    plain = math.send(b"hello", content_type="text/plain", path="/svc/mcp")
    assert plain.log["details"] == "via_upstream" and plain.log["upstream"].startswith("service/"), plain
    nonce = uuid.uuid4().hex
    oversize = math.send(duplicate_name(nonce, MAX_REQUEST_BODY_BYTES + 100).encode(), path="/svc/mcp")
    assert_never_ran(oversize, {"echo"}, nonce)
    assert oversize.log["mcp_partial"] is True and oversize.log["details"].startswith("rbac_access_denied"), oversize


# --- generated variants -------------------------------------------------------------------------------------

SHAPES = {"name": duplicate_name, "params": duplicate_params, "nested": duplicate_nested}
ESCAPES = {'"name"': '"n\\u0061me"', '"method"': '"m\\u0065thod"', '"echo"': '"\\u0065cho"',
           "tools/call": "tools\\/call"}


@st.composite
def variants(draw):
    agent = draw(st.sampled_from(["math", "intern"]))
    offset = draw(st.sampled_from(OFFSETS + [0, 4096, 65536]))
    nonce = uuid.uuid4().hex
    body = (duplicate_method if agent == "intern" else SHAPES[draw(st.sampled_from(sorted(SHAPES)))])(nonce, offset)
    for plain, escaped in ESCAPES.items():
        if draw(st.booleans()):
            body = body.replace(plain, escaped, 1) if draw(st.booleans()) else body.replace(plain, escaped)
    body = draw(st.sampled_from(["", " ", "\n\t "])) + body + draw(st.sampled_from(["", "\n", "  "]))
    transport = draw(st.sampled_from(["plain", "chunked", "http2"]))
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]))
    return agent, nonce, body, transport, content_type


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=variants())
def test_generated_variants_never_run_a_denied_tool(math, intern, variant):
    agent, nonce, body, transport, content_type = variant
    gateway, denied = (math, {"echo"}) if agent == "math" else (intern, {"echo", "get-sum"})
    exchange = gateway.send(body.encode(), chunked=transport == "chunked", http2=transport == "http2",
                            content_type=content_type)
    assert_never_ran(exchange, denied, nonce)




# --- client responses: answers pass, requests dressed as answers do not ----------------------------------
# Envoy's MCP filter names any body with a non-null object or string `result` (or any `error`) the method
# `__jsonrpc_response`, even when it also carries a `method`; the SDK server then runs that method (a
# `result` loses to the request). MATCH_BASE_PROTOCOL_METHODS admits only responses whose filter group is
# `unknown` (no method inside).

CALL_ECHO = '"method":"tools/call","params":{"name":"echo","arguments":{"message":"NONCE"}}'
ANSWERS = {
    "result": '{"jsonrpc":"2.0","id":5,"result":{}}',
    "error": '{"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":"declined"}}',
    "sampling": ('{"jsonrpc":"2.0","id":"s-1","result":{"role":"assistant","content":{"type":"text","text":"hi"},'
                 '"model":"m","stopReason":"endTurn"}}'),
}
DRESSED = {
    "method then result": '{"jsonrpc":"2.0","id":7,' + CALL_ECHO + ',"result":{}}',
    "result then method": '{"jsonrpc":"2.0","id":7,"result":{},' + CALL_ECHO + "}",
    "string result": '{"jsonrpc":"2.0","id":7,"result":"x",' + CALL_ECHO + "}",
    "escaped result key": '{"jsonrpc":"2.0","id":7,"r\\u0065sult":{},' + CALL_ECHO + "}",
    "error and method": '{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"},' + CALL_ECHO + "}",
    "no id": '{"jsonrpc":"2.0","result":{},' + CALL_ECHO + "}",
    "resources/list": '{"jsonrpc":"2.0","id":7,"result":{},"method":"resources/list"}',
    "tasks/list": '{"jsonrpc":"2.0","id":7,"result":{},"method":"tasks/list"}',
    "literal name": '{"jsonrpc":"2.0","id":7,"method":"__jsonrpc_response"}',
}


@pytest.mark.parametrize("shape", sorted(ANSWERS))
def test_a_client_answer_reaches_the_server_for_a_base_protocol_caller(intern, shape):
    exchange = intern.send(ANSWERS[shape].encode())
    assert exchange.status == 202 and exchange.log["mcp_method"] == "__jsonrpc_response", exchange
    assert exchange.log["decision"] is None and exchange.log["details"] == "via_upstream", exchange  # None: allowed
    assert exchange.log["gateway_result"] == exchange.log["backend_result"] == "allowed", exchange


@pytest.mark.parametrize("shape", sorted(DRESSED))
def test_a_request_dressed_as_an_answer_is_denied(intern, shape):
    nonce = uuid.uuid4().hex
    exchange = intern.send(DRESSED[shape].replace("NONCE", nonce).encode())
    assert_never_ran_any(exchange, nonce)
    assert exchange.log["mcp_method"] == "__jsonrpc_response", exchange  # what the filter calls it
    assert exchange.log["details"].startswith("rbac_access_denied"), exchange
    with_id = '"id":7' in DRESSED[shape]  # the JSON-RPC denial needs an id to answer; else the plain 403
    assert (exchange.status, '"code":403' in exchange.text) == ((200, True) if with_id else (403, False)), exchange


def test_a_dressed_call_of_an_allowed_tool_is_denied_too(math):
    """The filter reports `__jsonrpc_response` with the tool: neither a call nor an answer, so no rule matches."""
    body = '{"jsonrpc":"2.0","id":7,"result":{},"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}'
    exchange = math.send(body.encode())
    assert not exchange.ran and exchange.log["tool"] == "get-sum" and '"code":403' in exchange.text, exchange


def assert_never_ran_any(exchange: Exchange, nonce: str) -> None:
    assert not exchange.ran and f"Echo: {nonce}" not in exchange.text, exchange


def test_the_mesh_ran_nothing_it_should_not(mesh):
    """The server's whole record over the module: only math-agent's allowed get-sum calls ever ran."""
    assert {r["tool"] for r in mesh.tools_run()} <= {"get-sum"}, mesh.tools_run()
