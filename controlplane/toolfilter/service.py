"""The ext_proc service Envoy calls for each tools/list response on a filtered route (gRPC, on the xDS port).

One ext_proc stream is one HTTP request. Envoy sends the response headers only (that is all its
listener filter asks for), with the MCP filter's metadata and the caller's certificate URI SAN, path
and host as attributes, and only for a 2xx response to `tools/list` (the feature's matcher skips the
filter for every other response). Anything else that does arrive (an older listener's config) is
answered CONTINUE at once, as before; for a `tools/list` the answer asks for the whole body
(`mode_override`: response body BUFFERED), and the body comes back filtered by the graph with its
`content-length` set to the new length.

Who may ask: only the proxy the hop names (its xDS client certificate: the gateway's with role
`gateway`, or the workload's with role `sidecar`). Any
other mTLS client of the control plane (an agent's SVID, another gateway) would otherwise learn what
others may call; its lists are refused. A hop that does not parse is refused too (fail closed), and a
body that cannot be read unambiguously is refused by body.py. When this service is unreachable Envoy
passes the list unfiltered (`failure_mode_allow`, see the feature): RBAC still refuses the calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingRequest,
    ProcessingResponse,
)
from prometheus_client import CollectorRegistry, Counter

from controlplane.graph.model import AuthorizationGraph
from controlplane.identity import xds_auth
from controlplane.logs import clip
from controlplane.toolfilter.body import filter_body
from controlplane.toolfilter.decide import GATEWAY_HOP, HOP_HEADER, BadHop, Hop, tool_predicate
from controlplane.xds.peer import peer_identity

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
MCP_NAMESPACE = "envoy.filters.http.mcp"
EXT_PROC_ATTRIBUTES = "envoy.filters.http.ext_proc"  # the key Envoy files attributes under
CALLER_ATTRIBUTE, PATH_ATTRIBUTE, HOST_ATTRIBUTE = ("connection.uri_san_peer_certificate", "request.path",
                                                    "request.host")
# the path the caller sent, before a route's URL rewrite (Envoy records it in x-envoy-original-path)
ORIGINAL_PATH_ATTRIBUTE = "request.headers['x-envoy-original-path']"
RESPONSE_ATTRIBUTES = (CALLER_ATTRIBUTE, PATH_ATTRIBUTE, HOST_ATTRIBUTE, ORIGINAL_PATH_ATTRIBUTE)
BUFFER_BODY = ProcessingMode(request_header_mode=ProcessingModeHeaderSendMode.SKIP,
                             response_header_mode=ProcessingModeHeaderSendMode.SEND,
                             request_body_mode=ProcessingModeBodySendMode.NONE,
                             response_body_mode=ProcessingModeBodySendMode.BUFFERED,
                             request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
                             response_trailer_mode=ProcessingModeHeaderSendMode.SKIP)


def _parse(data: bytes) -> ProcessingRequest | None:
    try:
        return ProcessingRequest.parse(data)
    except Exception:  # noqa: BLE001 - bytes that are not a ProcessingRequest end the stream
        return None


class ToolsListFilter:
    """`handler()` is served beside ADS; `graph` is read at each list, so edits apply to the next one."""

    def __init__(self, *, graph: AuthorizationGraph, trust_domain: str, registry: CollectorRegistry | None = None,
                 require_gateway_identity: bool = True):
        self.graph = graph
        self.trust_domain = trust_domain
        self.require_gateway_identity = require_gateway_identity  # False only in tests without mTLS
        self.lists = Counter("agentic_tools_list_filtered_total", "tools/list responses seen by the filter",
                             ["outcome"], registry=registry if registry is not None else CollectorRegistry())

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(EXT_PROC_SERVICE, {
            "Process": grpc.stream_stream_rpc_method_handler(self._process, request_deserializer=_parse,
                                                             response_serializer=bytes)})

    async def _process(self, requests: AsyncIterator[ProcessingRequest | None], context: Any):
        pending: Callable[[ProcessingRequest], ProcessingResponse] | None = None
        async for request in requests:
            if request is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a ProcessingRequest")
            if request.response_headers is not None:
                answer, pending = self._on_headers(request, context)
                yield answer
            elif request.response_body is not None and pending is not None:
                if not request.response_body.end_of_stream:
                    yield ProcessingResponse(response_body=BodyResponse())  # BUFFERED sends one chunk
                    continue
                yield pending(request)
                pending = None
            else:  # a phase we never asked for: let it through unchanged
                yield _continue(request)

    def _on_headers(self, request: ProcessingRequest, context: Any):
        """CONTINUE for anything but a successful tools/list; for one, ask for its body."""
        mcp, headers = _metadata(request), _headers(request)
        if mcp.get("method") != "tools/list" or not headers.get(":status", "").startswith("2"):
            return ProcessingResponse(response_headers=HeadersResponse()), None
        try:
            hop = self._hop(context)
            refusal = self._untrusted(context, hop)
        except BadHop as exc:
            hop, refusal = None, str(exc)
        if refusal is None:
            attributes = _attributes(request)
            may_call = tool_predicate(self.graph, hop, caller=attributes.get(CALLER_ATTRIBUTE) or None,
                                      path=attributes.get(ORIGINAL_PATH_ATTRIBUTE) or attributes.get(PATH_ATTRIBUTE, "/"), host=attributes.get(HOST_ATTRIBUTE, ""))
        else:
            log.warning("tools/list refused: %s", clip(refusal))
            may_call = _nothing  # every tool hidden; a list that fails to parse is refused by body.py

        def on_body(body_request: ProcessingRequest) -> ProcessingResponse:
            return self._on_body(body_request.response_body.body, headers, mcp.get("id"), may_call)

        return ProcessingResponse(response_headers=HeadersResponse(), mode_override=BUFFER_BODY), on_body

    def _on_body(self, body: bytes, headers: dict[str, str], request_id, may_call) -> ProcessingResponse:
        result = filter_body(body, content_type=headers.get("content-type", ""),
                             content_encoding=headers.get("content-encoding"), may_call=may_call,
                             request_id=request_id)
        self.lists.labels("refused" if result.refused else "filtered" if result.changed else "untouched").inc()
        if not result.changed:
            return ProcessingResponse(response_body=BodyResponse())
        if result.refused:
            log.warning("tools/list result refused: %s", clip(result.refused))
        removed = [] if result.content_encoding else ["content-encoding"]
        mutation = HeaderMutation(set_headers=[_header("content-length", str(len(result.body)))],
                                  remove_headers=removed)
        common = CommonResponse(header_mutation=mutation, body_mutation=BodyMutation(body=result.body))
        return ProcessingResponse(response_body=BodyResponse(response=common))

    def _untrusted(self, context: Any, hop: Hop) -> str | None:
        """Why this stream's peer may not have decisions for `hop` (not its gateway proxy), or None."""
        if not self.require_gateway_identity:
            return None
        peer = peer_identity(context.auth_context())
        if hop.kind == GATEWAY_HOP:
            expected = xds_auth.proxy_identity_for_gateway(self.trust_domain, hop.namespace, hop.name)
            role = xds_auth.GATEWAY_ROLE
        else:
            expected = xds_auth.expected_spiffe_id(self.trust_domain,
                                                   xds_auth.node_id_for_workload(hop.namespace, hop.name))
            role = xds_auth.SIDECAR_ROLE
        if peer != expected or role not in getattr(peer, "xds_roles", ()):
            return f"ext_proc peer {clip(str(peer))} is not the {hop.kind} proxy of {hop.encode()}"
        return None

    @staticmethod
    def _hop(context: Any) -> Hop:
        values = [value for key, value in (context.invocation_metadata() or ()) if key == HOP_HEADER]
        if len(values) != 1:
            raise BadHop(f"{HOP_HEADER} is given {len(values)} times, not once")
        return Hop.parse(values[0])


def _nothing(tool: str) -> bool:
    return False


def _continue(request: ProcessingRequest) -> ProcessingResponse:
    for phase in ("request_headers", "response_headers"):
        if getattr(request, phase) is not None:
            return ProcessingResponse(**{phase: HeadersResponse()})
    for phase in ("request_body", "response_body"):
        if getattr(request, phase) is not None:
            return ProcessingResponse(**{phase: BodyResponse()})
    from envoy_data_plane.envoy.service.ext_proc.v3 import TrailersResponse

    for phase in ("request_trailers", "response_trailers"):
        if getattr(request, phase) is not None:
            return ProcessingResponse(**{phase: TrailersResponse()})
    return ProcessingResponse()


def _metadata(request: ProcessingRequest) -> dict:
    context = request.metadata_context
    struct = context.filter_metadata.get(MCP_NAMESPACE) if context is not None else None
    return _struct(struct)


def _attributes(request: ProcessingRequest) -> dict[str, str]:
    values = _struct(request.attributes.get(EXT_PROC_ATTRIBUTES))
    return {key: value for key, value in values.items() if isinstance(value, str)}


def _struct(struct) -> dict:
    if struct is None:
        return {}
    try:
        value = struct.to_dict()
    except Exception:  # noqa: BLE001 - a Struct we cannot read says nothing
        return {}
    return value if isinstance(value, dict) else {}


def _headers(request: ProcessingRequest) -> dict[str, str]:
    block = request.response_headers.headers
    out: dict[str, str] = {}
    for header in (block.headers if block is not None else ()):
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        out[header.key.lower()] = value
    return out


def _header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, raw_value=value.encode()),
                             append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD)
