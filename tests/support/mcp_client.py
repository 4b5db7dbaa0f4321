"""MCP clients that call through a gateway while presenting an agent's X.509-SVID.

Two clients, because they answer different questions:

- ``RawMcpClient`` speaks JSON-RPC over HTTP exactly as upstream kube-agentic-networking's tests do with
  curl (``cases.yaml`` ``request_defaults``): the same headers, upstream's literal ``initialize`` body,
  random integer ids, the ``mcp-session-id`` header once known, and the response JSON taken from the first
  SSE ``data:`` frame or a plain JSON body. It returns what came back (HTTP status, JSON-RPC ``result`` or
  ``error``, raw text) without judging it, so tests can compare a denial byte for byte with upstream's
  ``deny_response``.
- ``sdk_session`` gives an initialized ``mcp.ClientSession`` from the official SDK's streamable-HTTP
  client, so what a real agent library does with a gateway's answers (a JSON-RPC 403 error, an SSE
  stream, a refused handshake) is tested too.

TLS follows upstream's curl: the client presents ``cert``/``key``; ``ca=None`` skips server verification
(``curl -k``), a bundle path verifies the gateway against it. A refused TLS handshake or a connection that
cannot be made raises ``GatewayUnreachable``; every HTTP answer, whatever its status, is a result.

Note on the HTTP library: mcp 2.x is built on ``httpx2`` (the maintained fork with the ``httpx`` API), and
plain ``httpx`` is not installed next to it, so both clients use ``httpx2``.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Self

import httpx2

__all__ = [
    "PROTOCOL_VERSION",
    "GatewayUnreachable",
    "McpResult",
    "RawMcpClient",
    "mcp_http_client",
    "parse_mcp_body",
    "sdk_session",
    "tls_context",
]

PROTOCOL_VERSION = "2025-11-25"
SESSION_HEADER = "mcp-session-id"
BASE_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "mcp-protocol-version": PROTOCOL_VERSION,
}
# Upstream's session-opening body, verbatim (cases.yaml request_defaults.session_open).
INITIALIZE_PARAMS = {
    "protocolVersion": PROTOCOL_VERSION,
    "capabilities": {},
    "clientInfo": {"name": "curl-client", "version": "1.0.0"},
}

StrPath = str | PathLike[str]

# Transport failures that mean "never got an HTTP answer": refused connection, refused TLS handshake
# (with TLS 1.3 a rejected client certificate surfaces on the first read, as ReadError or a disconnect).
_UNREACHABLE = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ReadError, httpx2.WriteError,
                httpx2.RemoteProtocolError, ssl.SSLError)


class GatewayUnreachable(ConnectionError):
    """No HTTP answer: the TCP connection or the TLS handshake failed (upstream's ``curl-fails``)."""


def tls_context(*, cert: StrPath | None = None, key: StrPath | None = None,
                ca: StrPath | None = None) -> ssl.SSLContext:
    """Client-side TLS: present ``cert``/``key`` if given; verify the server against ``ca``, or not at all.

    ``ca=None`` is ``curl -k``: the gateway's certificate is not checked, as upstream's tests do. Hostname
    checking is on whenever a CA is given, so a gateway certificate must carry the address as a SAN.
    """
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    elif key is not None:
        raise ValueError("a client key without a client certificate")
    return ctx


@dataclass
class McpResult:
    """One HTTP exchange. ``body`` is the JSON-RPC message (None for an empty body, e.g. 202 or DELETE);
    ``headers`` has lower-cased names."""

    http_status: int
    body: dict[str, Any] | None
    raw: str
    request_id: int | str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.body.get("result") if isinstance(self.body, dict) else None

    @property
    def text(self) -> str | None:
        """``result.content[0].text`` when the first content block is text (what upstream compares)."""
        content = (self.result or {}).get("content") or []
        if content and isinstance(content[0], dict) and content[0].get("type") == "text":
            return content[0].get("text")
        return None


def parse_mcp_body(raw: str, *, content_type: str = "", request_id: Any = None) -> dict[str, Any] | None:
    """The JSON-RPC message in a streamable-HTTP response body, or None when there is none.

    For ``text/event-stream`` the events are split properly (``data:`` lines joined, CRLF or LF) and the
    event answering ``request_id`` wins, else the first JSON event: a server may send notifications ahead
    of the response on the same stream. Otherwise, and as the fallback, upstream's rule: decode one JSON
    value starting at the first ``{`` (which also accepts a single SSE frame).
    """
    if "text/event-stream" in content_type.lower():
        messages = []
        for event in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
            data = "\n".join(line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:"))
            if data.strip():
                try:
                    messages.append(json.loads(data))
                except ValueError:
                    continue
        for message in messages:
            if isinstance(message, dict) and request_id is not None and message.get("id") == request_id:
                return message
        for message in messages:
            if isinstance(message, dict):
                return message
    start = raw.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(raw, start)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _lower_headers(response: httpx2.Response) -> dict[str, str]:
    # Header names are case-insensitive (upstream matches mcp-session-id so); keep them lower-cased.
    return {name.lower(): value for name, value in response.headers.items()}


class RawMcpClient:
    """JSON-RPC over HTTP(S) to one MCP endpoint, one session at a time, as upstream's curl calls do.

    Use as ``async with RawMcpClient(url, cert=(cert, key)) as client:``; ``initialize()`` opens the
    session. Nothing is retried: upstream's eventual-consistency retries belong to the test that knows
    what it is waiting for.
    """

    def __init__(
        self,
        base_url: str,
        *,
        cert: tuple[StrPath, StrPath] | None = None,
        ca: StrPath | None = None,
        timeout: float = 10.0,
        protocol_version: str = PROTOCOL_VERSION,
        proxy: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """``proxy``: an explicit HTTP proxy (an agent's sidecar: ``http://127.0.0.1:15001``), never the env's.
        ``extra_headers``: sent with every request (a hostile caller's forged headers, say)."""
        self.url = base_url
        self.session_id: str | None = None
        self._headers = dict(BASE_HEADERS, **{"mcp-protocol-version": protocol_version}, **(extra_headers or {}))
        cert_path, key_path = cert if cert is not None else (None, None)
        self._http = httpx2.AsyncClient(
            verify=tls_context(cert=cert_path, key=key_path, ca=ca),
            timeout=httpx2.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must never sit between a test and its gateway
            proxy=proxy,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests -----------------------------------------------------------------------------------
    def _request_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        return headers

    async def _send(self, method: str, *, headers: dict[str, str], content: bytes | None = None) -> httpx2.Response:
        try:
            return await self._http.request(method, self.url, headers=headers, content=content)
        except _UNREACHABLE as exc:
            raise GatewayUnreachable(f"{method} {self.url}: {type(exc).__name__}: {exc}") from exc

    async def post(self, message: dict[str, Any]) -> McpResult:
        """POST one JSON-RPC message (request or notification) and parse the answer."""
        body = json.dumps(message, separators=(",", ":")).encode()
        response = await self._send("POST", headers=self._request_headers(), content=body)
        raw = response.text
        request_id = message.get("id")
        return McpResult(
            http_status=response.status_code,
            body=parse_mcp_body(raw, content_type=response.headers.get("content-type", ""),
                                request_id=request_id),
            raw=raw,
            request_id=request_id,
            headers=_lower_headers(response),
        )

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   request_id: int | str | None = None) -> McpResult:
        """A JSON-RPC request with a random integer id (0..999999, as upstream) unless one is given."""
        rid = random.randint(0, 999_999) if request_id is None else request_id
        return await self.post({"jsonrpc": "2.0", "id": rid, "method": method,
                                "params": {} if params is None else params})

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> McpResult:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        return await self.post(message)

    async def initialize(self) -> McpResult:
        """Open a session with upstream's literal initialize (id 1), keep its ``mcp-session-id``, and send
        ``notifications/initialized`` when the server accepted. A refused initialize is returned, not
        raised, so a test can assert on the denial."""
        self.session_id = None
        result = await self.call("initialize", INITIALIZE_PARAMS, request_id=1)
        session_id = result.headers.get(SESSION_HEADER)
        if result.http_status == 200 and result.result is not None:
            self.session_id = session_id
            await self.notify("notifications/initialized")
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        request_id: int | str | None = None) -> McpResult:
        return await self.call("tools/call", {"name": name, "arguments": arguments or {}}, request_id=request_id)

    async def list_tools(self) -> McpResult:
        return await self.call("tools/list", {})

    async def ping(self) -> McpResult:
        return await self.call("ping", {})

    async def delete_session(self) -> McpResult:
        """End the session: an HTTP DELETE carrying only the session header (upstream's bare request)."""
        headers = {SESSION_HEADER: self.session_id} if self.session_id is not None else {}
        response = await self._send("DELETE", headers=headers)
        if 200 <= response.status_code < 300:
            self.session_id = None
        return McpResult(http_status=response.status_code, body=parse_mcp_body(response.text), raw=response.text,
                         headers=_lower_headers(response))


# -- the official SDK ---------------------------------------------------------------------------------
def mcp_http_client(
    *,
    cert: StrPath | None = None,
    key: StrPath | None = None,
    ca: StrPath | None = None,
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """The SDK's default client (``mcp.shared._httpx_utils.create_mcp_http_client``: 30 s operations, 300 s
    SSE reads) plus TLS with a client certificate. mcp 2.x's ``streamable_http_client`` takes a ready
    ``http_client=`` instead of 1.x's ``httpx_client_factory=``; the SSE client still takes a factory, and
    ``functools.partial(mcp_http_client, cert=..., key=..., ca=...)`` fits its ``McpHttpClientFactory``."""
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    return httpx2.AsyncClient(
        verify=tls_context(cert=cert, key=key, ca=ca),
        timeout=timeout or httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        headers=headers,
        auth=auth,
        trust_env=False,
    )


def _single_leaf(error: BaseException) -> BaseException | None:
    """The one exception inside (nested) exception groups, or None when there are several."""
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


@asynccontextmanager
async def sdk_session(
    url: str,
    *,
    cert: StrPath | None = None,
    key: StrPath | None = None,
    ca: StrPath | None = None,
    read_timeout_seconds: float | None = 15.0,
    client_name: str = "agentic-cp-devtools",
) -> AsyncIterator[Any]:
    """An initialized ``mcp.ClientSession`` over streamable HTTP, presenting ``cert``/``key``.

    What the SDK surfaces, and what this adds:
    - a JSON-RPC error answer (a gateway's 403 denial) raises ``mcp.MCPError`` from the call, with
      ``.error.code``/``.error.message`` intact; the session stays usable;
    - the SDK's transport runs in anyio task groups, so failures leave it wrapped in (nested)
      ``ExceptionGroup``s. A group holding a single exception is unwrapped here, so a denied
      ``initialize`` raises ``MCPError`` and an exception from the caller's own block comes out as itself;
    - a refused TLS handshake or connection while opening the session raises ``GatewayUnreachable``,
      as ``RawMcpClient`` does.
    On exit the SDK sends its DELETE for the session and closes its streams; the HTTP client closes last.
    """
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import Implementation

    opened = False
    try:
        async with (
            mcp_http_client(cert=cert, key=key, ca=ca) as http_client,
            streamable_http_client(url, http_client=http_client) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream, read_timeout_seconds=read_timeout_seconds,
                          client_info=Implementation(name=client_name, version="1.0.0")) as session,
        ):
            await session.initialize()
            opened = True
            yield session
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        if not opened and isinstance(leaf, _UNREACHABLE):
            raise GatewayUnreachable(f"MCP session to {url}: {type(leaf).__name__}: {leaf}") from leaf
        raise leaf from None
    except _UNREACHABLE as exc:
        if opened:
            raise
        raise GatewayUnreachable(f"MCP session to {url}: {type(exc).__name__}: {exc}") from exc
