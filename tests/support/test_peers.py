"""The real peers in tests.support, proven against each other and against a real Envoy.

Two layers:
- the MCP test server answers both clients directly (no Envoy): upstream's tools and texts, sessions,
  DELETE; SSE and JSON framings;
- through a real Envoy 1.40 with a hand-written STATIC config (no control plane involved): mTLS with
  required client certificates, the MCP filter, an RBAC ALLOW policy on the caller's SPIFFE ID and the
  tool name, and upstream's JSON-RPC denial (HTTP 200, error 403) made by a local_reply mapper. This is
  the enforcement shape the control plane must generate, checked here with nothing generated.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.files import write_identity
from controlplane.identity.xds_auth import issue_server_identity
from tests.support.envoy import EnvoyNotReady, EnvoyProcess, free_port, next_base_id
from tests.support.mcp_client import (
    GatewayUnreachable,
    RawMcpClient,
    parse_mcp_body,
    sdk_session,
)
from tests.support.mcp_server import TOOL_NAMES, js_number, serve_mcp, tiny_png

TRUST_DOMAIN = "cluster.local"
AGENT_A = "spiffe://cluster.local/ns/quickstart/sa/agent-a"
AGENT_B = "spiffe://cluster.local/ns/quickstart/sa/agent-b"
DENY_MESSAGE = "Access to this tool is forbidden."


# -- pure helpers -------------------------------------------------------------------------------------
def test_js_number_prints_like_javascript():
    assert [js_number(x) for x in (5, 5.0, -3.0, 2.5, 0.1 + 0.2)] == ["5", "5", "-3", "2.5", "0.30000000000000004"]


def test_tiny_png_is_a_png():
    png = tiny_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        ('{"jsonrpc":"2.0","id":3,"result":{}}', "application/json", {"jsonrpc": "2.0", "id": 3, "result": {}}),
        ('event: message\r\ndata: {"jsonrpc":"2.0","id":3,"result":{}}\r\n\r\n', "text/event-stream",
         {"jsonrpc": "2.0", "id": 3, "result": {}}),
        # a notification ahead of the answer on the same stream: the answer to our id wins
        (('data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
          'data: {"jsonrpc":"2.0","id":3,"result":{"ok":1}}\n\n'), "text/event-stream",
         {"jsonrpc": "2.0", "id": 3, "result": {"ok": 1}}),
        # an empty priming event, then the answer
        ('id: 1\ndata: \n\nevent: message\ndata: {"id":3,"result":{}}\n\n', "text/event-stream",
         {"id": 3, "result": {}}),
        # upstream's rule without a content type: JSON from the first '{'
        ('event: message\ndata: {"id":3,"error":{"code":403}}\n\n', "", {"id": 3, "error": {"code": 403}}),
        ("", "", None),
        ("upstream connect error", "text/plain", None),
    ],
)
def test_parse_mcp_body(raw, content_type, expected):
    assert parse_mcp_body(raw, content_type=content_type, request_id=3) == expected


# -- the MCP server, directly -------------------------------------------------------------------------
@pytest.mark.parametrize("json_response", [False, True], ids=["sse", "json"])
async def test_raw_client_against_server(json_response):
    async with serve_mcp(port=0, json_response=json_response) as server, RawMcpClient(server.url) as client:
        assert server.url == f"http://127.0.0.1:{server.port}/mcp"
        init = await client.initialize()
        assert init.http_status == 200 and init.body["id"] == 1
        assert init.result["protocolVersion"] == "2025-11-25"
        assert client.session_id
        expected_type = "application/json" if json_response else "text/event-stream"
        assert init.headers["content-type"].startswith(expected_type)

        tools = await client.list_tools()
        assert sorted(t["name"] for t in tools.result["tools"]) == sorted(TOOL_NAMES)

        total = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert total.http_status == 200 and total.body["id"] == total.request_id
        assert total.result["isError"] is False
        assert total.text == "The sum of 2 and 3 is 5."
        assert (await client.call_tool("get-sum", {"a": 1.5, "b": 2})).text == "The sum of 1.5 and 2 is 3.5."
        assert (await client.call_tool("echo", {"message": "hello"})).text == "Echo: hello"
        assert json.loads((await client.call_tool("get-env")).text)["MCP_TEST_SERVER"] == "1"
        image = (await client.call_tool("get-tiny-image")).result["content"]
        png = next(c for c in image if c["type"] == "image")
        assert png["mimeType"] == "image/png" and base64.b64decode(png["data"]) == tiny_png()

        session = client.session_id
        closed = await client.delete_session()
        assert closed.http_status == 200 and client.session_id is None
        client.session_id = session  # the old session is gone on the server
        gone = await client.list_tools()
        assert gone.http_status == 404 and gone.error is not None


async def test_sdk_client_against_server():
    async with serve_mcp(port=0) as server, sdk_session(server.url) as session:
        tools = await session.list_tools()
        assert sorted(t.name for t in tools.tools) == sorted(TOOL_NAMES)
        result = await session.call_tool("get-sum", {"a": 2, "b": 3})
        assert result.is_error is False and result.content[0].text == "The sum of 2 and 3 is 5."
        echo = await session.call_tool("echo", {"message": "hi"})
        assert echo.content[0].text == "Echo: hi"


async def test_unreachable_server_is_gateway_unreachable():
    async with RawMcpClient(f"http://127.0.0.1:{free_port()}/mcp", timeout=2) as client:
        with pytest.raises(GatewayUnreachable):
            await client.initialize()


# -- through a real Envoy -----------------------------------------------------------------------------
def _sourced_metadata(key: list[str], value: str) -> dict:
    return {"sourced_metadata": {
        "metadata_matcher": {"filter": "envoy.filters.http.mcp", "path": [{"key": k} for k in key],
                             "value": {"string_match": {"exact": value}}},
        "metadata_source": "DYNAMIC",
    }}


def gateway_bootstrap(*, server_pem: bytes, server_key: bytes, client_ca: bytes, upstream_port: int,
                      allowed_principal: str, allowed_tool: str) -> dict:
    """A static Envoy gateway: mTLS listener (port 0), MCP filter, RBAC per SPIFFE ID and tool, upstream's
    JSON-RPC denial. Written by hand, as the oracle the control plane's translation is compared to."""
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"inline_bytes": base64.b64encode(server_pem).decode()},
                                      "private_key": {"inline_bytes": base64.b64encode(server_key).decode()}}],
                "validation_context": {"trusted_ca": {"inline_bytes": base64.b64encode(client_ca).decode()}},
            },
        },
    }
    rbac = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": {"agent-a-tools": {
            "principals": [{"authenticated": {"principal_name": {"exact": allowed_principal}}}],
            "permissions": [{"or_rules": {"rules": [
                {"not_rule": _sourced_metadata(["method"], "tools/call")},
                _sourced_metadata(["params", "name"], allowed_tool),
            ]}}],
        }}},
    }
    deny_as_jsonrpc = {
        # Only a denied JSON-RPC *request* (the MCP filter saw an id) becomes a JSON-RPC error; a denied
        # DELETE, GET or notification keeps its plain 403 instead of a fake success with "id": null.
        "filter": {"and_filter": {"filters": [
            {"status_code_filter": {"comparison": {
                "op": "EQ", "value": {"default_value": 403, "runtime_key": "devtools.deny_status"}}}},
            {"metadata_filter": {"matcher": {"filter": "envoy.filters.http.mcp", "path": [{"key": "id"}],
                                             "value": {"present_match": True}},
                                 "match_if_key_not_found": False}},  # the default (true) matches anything
        ]}},
        "status_code": 200,
        "body_format_override": {
            "json_format": {"jsonrpc": "2.0", "id": "%DYNAMIC_METADATA(envoy.filters.http.mcp:id)%",
                            "error": {"code": 403, "message": DENY_MESSAGE}},
            "content_type": "application/json",
        },
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                 ".HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": {"name": "gateway", "virtual_hosts": [{
            "name": "mcp", "domains": ["*"],
            # timeout 0: the SDK's GET stream and SSE answers may outlive Envoy's 15 s default
            "routes": [{"match": {"prefix": "/mcp"}, "route": {"cluster": "mcp-everything", "timeout": "0s"}}],
        }]},
        "local_reply_config": {"mappers": [deny_as_jsonrpc]},
        "http_filters": [
            {"name": "envoy.filters.http.mcp",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"}},
            {"name": "envoy.filters.http.rbac", "typed_config": rbac},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"transport_socket": tls, "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
            }],
            "clusters": [{
                "name": "mcp-everything", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "mcp-everything", "endpoints": [{"lb_endpoints": [endpoint]}]},
            }],
        },
    }


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    """A test CA, the gateway's serving cert (SANs localhost/127.0.0.1) and two agents' SVID files."""
    ca = CertificateAuthority.create(trust_domain=TRUST_DOMAIN)
    root = tmp_path_factory.mktemp("identities")
    return {
        "ca": ca,
        "server": issue_server_identity(ca),
        "agent-a": write_identity(root / "agent-a", ca.issue(AGENT_A), ca.bundle_pem),
        "agent-b": write_identity(root / "agent-b", ca.issue(AGENT_B), ca.bundle_pem),
    }


@pytest.fixture
async def gateway(identities, tmp_path):
    """(url of /mcp on a running static Envoy gateway, the EnvoyProcess) in front of a real MCP server."""
    async with serve_mcp(port=0) as server:
        bootstrap = tmp_path / "gateway.json"
        bootstrap.write_text(json.dumps(gateway_bootstrap(
            server_pem=identities["server"].cert_pem, server_key=identities["server"].key_pem,
            client_ca=identities["ca"].bundle_pem, upstream_port=server.port,
            allowed_principal=AGENT_A, allowed_tool="get-sum")))
        with EnvoyProcess.start(bootstrap, log_path=tmp_path / "envoy.log") as envoy:
            await envoy.wait_ready_async(timeout=20)
            yield f"https://127.0.0.1:{envoy.listener_port('gateway')}/mcp", envoy


def _cert(files) -> tuple[Path, Path]:
    return files.cert, files.key


@pytest.mark.slow
async def test_gateway_allows_and_denies_agent_a(gateway, identities):
    url, envoy = gateway
    async with RawMcpClient(url, cert=_cert(identities["agent-a"])) as client:
        init = await client.initialize()
        assert init.http_status == 200 and init.result is not None and client.session_id

        tools = await client.list_tools()
        assert sorted(t["name"] for t in tools.result["tools"]) == sorted(TOOL_NAMES)

        allowed = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert allowed.http_status == 200 and allowed.body["id"] == allowed.request_id
        assert allowed.text == "The sum of 2 and 3 is 5."

        denied = await client.call_tool("echo", {"message": "hello"}, request_id=424242)
        # upstream's deny_response, exactly, including the request's own numeric id
        assert denied.http_status == 200
        assert denied.body == {"jsonrpc": "2.0", "id": 424242, "error": {"code": 403, "message": DENY_MESSAGE}}
        assert denied.headers["content-type"].startswith("application/json")

        assert (await client.delete_session()).http_status == 200

    stats = envoy.stats(r"http\.gateway\.rbac\.")
    assert stats["http.gateway.rbac.denied"] == 1 and stats["http.gateway.rbac.allowed"] >= 4


@pytest.mark.slow
async def test_gateway_verifies_with_bundle_and_denies_other_agents(gateway, identities):
    url, _ = gateway
    bundle = identities["agent-a"].bundle
    # the gateway's cert verifies against the trust bundle (SAN 127.0.0.1), not only with curl -k
    async with RawMcpClient(url, cert=_cert(identities["agent-a"]), ca=bundle) as client:
        assert (await client.initialize()).result is not None

    async with RawMcpClient(url, cert=_cert(identities["agent-b"]), ca=bundle) as other:
        init = await other.initialize()
        assert init.http_status == 200 and init.error == {"code": 403, "message": DENY_MESSAGE}
        assert init.body["id"] == 1 and other.session_id is None
        call = await other.call_tool("get-sum", {"a": 2, "b": 3})
        assert call.error["code"] == 403 and call.body["id"] == call.request_id and call.result is None
        named = await other.call_tool("get-sum", {"a": 2, "b": 3}, request_id="req-7")  # string ids too
        assert named.body == {"jsonrpc": "2.0", "id": "req-7", "error": {"code": 403, "message": DENY_MESSAGE}}
        # No JSON-RPC id, no JSON-RPC error: a denied notification or DELETE stays a plain HTTP 403
        # rather than an HTTP 200 that looks like success (the mapper's metadata_filter).
        notified = await other.notify("notifications/initialized")
        assert notified.http_status == 403 and notified.body is None
        other.session_id = "not-a-session"
        assert (await other.delete_session()).http_status == 403


@pytest.mark.slow
async def test_gateway_refuses_clients_without_certificate(gateway, identities):
    url, _ = gateway
    async with RawMcpClient(url) as anonymous:
        with pytest.raises(GatewayUnreachable):
            await anonymous.initialize()
    # a certificate from another CA is refused in the handshake too
    stranger_ca = CertificateAuthority.create(trust_domain=TRUST_DOMAIN)
    stranger = write_identity(Path(identities["agent-a"].cert).parent.parent / "stranger",
                              stranger_ca.issue(AGENT_A), stranger_ca.bundle_pem)
    async with RawMcpClient(url, cert=_cert(stranger)) as impostor:
        with pytest.raises(GatewayUnreachable):
            await impostor.initialize()


@pytest.mark.slow
async def test_sdk_agent_through_gateway(gateway, identities):
    from mcp import MCPError

    url, _ = gateway
    files = identities["agent-a"]
    async with sdk_session(url, cert=files.cert, key=files.key, ca=files.bundle) as session:
        result = await session.call_tool("get-sum", {"a": 2, "b": 3})
        assert result.is_error is False and result.content[0].text == "The sum of 2 and 3 is 5."
        # The SDK raises the gateway's JSON-RPC error as MCPError (code and message intact); the session
        # stays usable afterwards.
        with pytest.raises(MCPError) as denied:
            await session.call_tool("echo", {"message": "hello"})
        assert denied.value.error.code == 403 and denied.value.error.message == DENY_MESSAGE
        assert (await session.call_tool("get-sum", {"a": 1, "b": 1})).content[0].text == "The sum of 1 and 1 is 2."

    other = identities["agent-b"]
    with pytest.raises(MCPError) as refused:  # initialize itself is denied for an unlisted SPIFFE ID
        async with sdk_session(url, cert=other.cert, key=other.key, ca=other.bundle):
            pass
    assert refused.value.error.code == 403
    with pytest.raises(GatewayUnreachable):  # no client certificate: the TLS handshake fails
        async with sdk_session(url, ca=files.bundle):
            pass


@pytest.mark.slow
def test_envoy_process_reports_bad_config(tmp_path):
    bootstrap = tmp_path / "bad.yaml"
    bootstrap.write_text("admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n"
                         "static_resources: {clusters: [{name: x, type: NOT_A_TYPE}]}\n")
    envoy = EnvoyProcess.start(bootstrap, log_path=tmp_path / "bad.log", base_id=next_base_id())
    with envoy, pytest.raises(EnvoyNotReady, match="NOT_A_TYPE"):
        envoy.wait_ready(timeout=10)
    assert not envoy.running()
