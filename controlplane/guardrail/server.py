"""The guardrail as a gRPC service: Envoy's `envoy.service.ext_proc.v3.ExternalProcessor/Process`.

One bidirectional stream per HTTP exchange. Envoy sends the request headers, the whole request body,
then (when the policy judges responses) the response headers and the whole response body; each gets
exactly one answer. A pass is CONTINUE; a block is an ImmediateResponse: HTTP 200 with a JSON-RPC
error carrying the request's id, `data.reason` (the detector, never the matched text) and the header
`x-agentic-decision: blocked`. A notification (no id) is blocked with a plain 403, since a JSON-RPC
reply to it would break the protocol. A request that is not a POST carries no JSON-RPC message: its
bodies are skipped (`mode_override`), so an event stream (GET) is never held back.
A message Envoy should never send (garbled, out of order) ends the stream with an error: Envoy then
applies the policy's failure mode (closed by default).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from controlplane.guardrail.detectors import Detector
from controlplane.guardrail.judge import Block, Exchange, Settings
from controlplane.guardrail.messages import NO_ID

PROCESS_METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
DECISION_HEADER = "x-agentic-decision"
GUARDRAIL_HEADER = "x-agentic-guardrail"  # NS/POLICY#REASON of a block, for the audit record (audit/record.py)
BLOCKED = "blocked"
BLOCKED_CODE = 403  # the project's JSON-RPC code for a refused call (features/jsonrpc_denial.py)
log = logging.getLogger("agentic_cp.guardrail")


def _pb():
    from envoy_data_plane.envoy.config.core import v3 as core
    from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as ext_proc_config
    from envoy_data_plane.envoy.service.ext_proc import v3 as ext_proc
    from envoy_data_plane.envoy.type import v3 as http_type

    return core, ext_proc_config, ext_proc, http_type


def headers_of(message: Any) -> dict[str, str]:
    """An HttpHeaders message as a dict of lower-case names (raw_value or value, as Envoy sends)."""
    header_map = getattr(message, "headers", None)
    out = {}
    for header in getattr(header_map, "headers", None) or []:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        out[header.key.lower()] = value
    return out


def block_body(block: Block, request_id: Any, policy: str) -> bytes:
    error = {"code": BLOCKED_CODE, "message": block.message,
             "data": {"reason": block.reason, "phase": block.phase, "policy": policy}}
    if block.detail:
        error["data"]["detail"] = block.detail[:200]
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()


class GuardrailService:
    """The Process handler, with the detectors it judges by; counts what it decided (for tests and logs)."""

    def __init__(self, found: tuple[Detector, ...]):
        self.found = found
        self.decisions: list[tuple[str, str | None]] = []  # (policy, block reason or None), one per judged body

    async def process(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[bytes]:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        exchange = Exchange(Settings.from_metadata(metadata), self.found)
        request_headers: dict[str, str] = {}
        response_headers: dict[str, str] = {}
        async for request in requests:
            answer, done = self._answer(exchange, request, request_headers, response_headers)
            yield bytes(answer)
            if done:
                return

    def _answer(self, exchange: Exchange, request: Any, request_headers: dict, response_headers: dict):
        _, ext_proc_config, pb, _ = _pb()
        if request.request_headers is not None:
            request_headers.update(headers_of(request.request_headers))
            answer = pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=pb.CommonResponse()))
            if request_headers.get(":method", "POST").upper() != "POST":
                answer.mode_override = ext_proc_config.ProcessingMode(
                    request_body_mode=ext_proc_config.ProcessingModeBodySendMode.NONE,
                    response_header_mode=ext_proc_config.ProcessingModeHeaderSendMode.SKIP,
                    response_body_mode=ext_proc_config.ProcessingModeBodySendMode.NONE)
            return answer, False
        if request.request_body is not None:
            block = exchange.on_request(request.request_body.body, request_headers.get("content-encoding", ""))
            return self._verdict(exchange, block, "request_body"), block is not None
        if request.response_headers is not None:
            response_headers.update(headers_of(request.response_headers))
            return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=pb.CommonResponse())), False
        if request.response_body is not None:
            block = exchange.on_response(request.response_body.body, response_headers.get("content-type", ""),
                                         response_headers.get("content-encoding", ""))
            return self._verdict(exchange, block, "response_body"), block is not None
        raise ValueError("a ProcessingRequest this guardrail does not handle (trailers or nothing)")

    def _verdict(self, exchange: Exchange, block: Block | None, phase_field: str):
        _, _, pb, _ = _pb()
        if exchange.judged:
            self.decisions.append((exchange.settings.policy, block.reason if block else None))
        if block is None:
            return pb.ProcessingResponse(**{phase_field: pb.BodyResponse(response=pb.CommonResponse())})
        log.info("blocked %s %s: %s (policy %s)", block.phase, exchange.request.method if exchange.request else "?",
                 block.reason, exchange.settings.policy or "-")
        return pb.ProcessingResponse(immediate_response=self._immediate(exchange, block))

    def _immediate(self, exchange: Exchange, block: Block):
        core, _, pb, http_type = _pb()
        request_id = exchange.request_id
        headers = [(DECISION_HEADER, BLOCKED), (GUARDRAIL_HEADER, f"{exchange.settings.policy or '-'}#{block.reason}")]
        if request_id is NO_ID:
            status, body = http_type.StatusCode.Forbidden, b""
        else:
            status, body = http_type.StatusCode.OK, block_body(block, request_id, exchange.settings.policy)
            headers.append(("content-type", "application/json"))
        mutation = pb.HeaderMutation(set_headers=[
            core.HeaderValueOption(header=core.HeaderValue(key=k, raw_value=v.encode()),
                                   append_action=core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD)
            for k, v in headers])
        return pb.ImmediateResponse(status=http_type.HttpStatus(code=status), headers=mutation, body=body,
                                    details=f"guardrail_blocked_{block.reason}"[:100])

    def handler(self):
        """The generic gRPC handler to add to a grpc.aio server."""
        import grpc
        from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingRequest

        method = grpc.stream_stream_rpc_method_handler(self.process, request_deserializer=ProcessingRequest.parse,
                                                       response_serializer=lambda b: b)
        service, name = PROCESS_METHOD.strip("/").split("/")
        return grpc.method_handlers_generic_handler(service, {name: method})


async def serve(address: str, found: tuple[Detector, ...], *, ready=None) -> None:
    """Serve until cancelled (plaintext gRPC: it runs beside the proxy, or behind the mesh's mTLS)."""
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((GuardrailService(found).handler(),))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    log.info("guardrail serving on %s with detectors %s", address, ", ".join(d.name for d in found))
    if ready is not None:
        ready(port)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(grace=1)
