"""Filter one `tools/list` response body, JSON or SSE, keeping it valid MCP. Pure: bytes in, bytes out.

What comes back from the MCP server is judged, never trusted:
- a JSON body, or an SSE event whose data is JSON, that is a JSON-RPC result holding a `tools` array
  is re-serialized without the tools the caller may not call; every other field (of the result and of
  each kept tool) is kept as the server wrote it;
- anything that is not such a result (a JSON-RPC error, a notification, text, an empty body, an SSE
  event that is not JSON) passes untouched: it names no tool, so it leaks nothing;
- what looks like a tools/list result but cannot be read unambiguously (duplicate keys, a `tools` that
  is not an array, a tool without a string `name`, a body over `MAX_BODY_BYTES` once decoded, an
  encoding other than identity or gzip) is *refused*: replaced by a JSON-RPC error. Passing it on
  could leak names a client reads differently from us; a refused list costs discovery, not safety.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.inflate import BodyTooLarge, CorruptBody, TruncatedBody, bounded_inflate

MAX_BODY_BYTES = 8 * 1024 * 1024  # decoded; Envoy buffers at most its buffer limit (1 MiB) before this
MAX_TOOLS = 10_000  # a list longer than this is refused rather than decided tool by tool
REFUSED_CODE = -32603  # JSON-RPC internal error
REFUSED_MESSAGE = "tools/list result could not be filtered for this caller"

MayCall = Callable[[str], bool]


class Unfilterable(ValueError):
    """A tools/list result we cannot read unambiguously: it is refused, never passed on."""


@dataclass(frozen=True)
class Filtered:
    body: bytes
    content_encoding: str | None  # the encoding `body` is in (None: identity)
    changed: bool  # False: pass the original bytes on untouched
    kept: int = 0
    removed: int = 0
    refused: str | None = None  # why the list was replaced by a JSON-RPC error


def filter_body(body: bytes, *, content_type: str, content_encoding: str | None, may_call: MayCall,
                request_id=None) -> Filtered:
    """The body to send the caller instead of `body`; `changed` False means send `body` as it is."""
    encoding = (content_encoding or "").strip().lower() or None
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        raw = _decode(body, encoding)
        if media == "text/event-stream":
            out, kept, removed = _filter_sse(raw, may_call)
        elif media == "application/json" or media.endswith("+json"):
            out, kept, removed = _filter_json(raw, may_call)
        else:
            return Filtered(body, encoding, changed=False)
    except Unfilterable as exc:
        return Filtered(_refusal(request_id, sse=media == "text/event-stream"), None, changed=True,
                        refused=str(exc))
    if out is None:
        return Filtered(body, encoding, changed=False)
    return Filtered(_encode(out, encoding), encoding, changed=True, kept=kept, removed=removed)


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "identity"):
        if len(body) > MAX_BODY_BYTES:
            raise Unfilterable(f"body over {MAX_BODY_BYTES} bytes")
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise Unfilterable(f"content-encoding {encoding!r} is not gzip or identity")
    try:
        return bounded_inflate(body, wbits=31, limit=MAX_BODY_BYTES)  # gzip framing
    except CorruptBody as exc:
        raise Unfilterable(f"gzip body does not inflate: {exc}") from None
    except BodyTooLarge:
        raise Unfilterable(f"gzip body inflates past {MAX_BODY_BYTES} bytes") from None
    except TruncatedBody:
        raise Unfilterable("gzip body is truncated") from None


def _encode(raw: bytes, encoding: str | None) -> bytes:
    return gzip.compress(raw, mtime=0) if encoding in ("gzip", "x-gzip") else raw


def _filter_json(raw: bytes, may_call: MayCall) -> tuple[bytes | None, int, int]:
    message = _parse(raw)
    if message is None:
        return None, 0, 0
    kept, removed = _filter_message(message, may_call)
    return _dump(message), kept, removed


def _filter_sse(raw: bytes, may_call: MayCall) -> tuple[bytes | None, int, int]:
    """Each event (blank-line separated) whose data is a tools/list result is rewritten as one `data:`
    line; its other fields (event, id, retry) and every other event keep their bytes."""
    text = raw.decode("utf-8", errors="strict") if _utf8(raw) else None
    if text is None:
        return None, 0, 0
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    events = text.split("\n\n")
    out, kept, removed, touched = [], 0, 0, False
    for event in events:
        lines = event.split("\n")
        data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:") or line == "data"]
        message = _parse("\n".join(data).encode()) if data else None
        if message is None:
            out.append(event)
            continue
        k, r = _filter_message(message, may_call)
        kept, removed, touched = kept + k, removed + r, True
        others = [line for line in lines if not (line.startswith("data:") or line == "data")]
        out.append("\n".join([*others, "data: " + _dump(message).decode()]))
    return ("\n\n".join(out).encode() if touched else None), kept, removed


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse(raw: bytes) -> dict | None:
    """The JSON-RPC result holding `tools`, or None for anything that is not one (passed untouched)."""
    try:
        message = json.loads(raw, object_pairs_hook=_pairs)
    except _Duplicate as exc:
        if b'"tools"' in raw:
            raise Unfilterable(f"duplicate JSON key {exc.args[0]!r}") from None
        return None
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("result"), dict):
        return None
    if "tools" not in message["result"]:
        return None
    return message


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _filter_message(message: dict, may_call: MayCall) -> tuple[int, int]:
    tools = message["result"]["tools"]
    if not isinstance(tools, list):
        raise Unfilterable("result.tools is not an array")
    if len(tools) > MAX_TOOLS:
        raise Unfilterable(f"more than {MAX_TOOLS} tools")
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise Unfilterable("a tool without a string name")
    allowed = [tool for tool in tools if may_call(tool["name"])]
    message["result"]["tools"] = allowed
    return len(allowed), len(tools) - len(allowed)


def _dump(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def _refusal(request_id, *, sse: bool) -> bytes:
    """A JSON-RPC error in the body's own framing (an SSE `message` event, or a JSON object)."""
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        request_id = None
    error = _dump({"jsonrpc": "2.0", "id": request_id, "error": {"code": REFUSED_CODE, "message": REFUSED_MESSAGE}})
    return b"event: message\ndata: " + error + b"\n\n" if sse else error
