"""MCP bodies as the guardrail reads them: JSON-RPC requests, and responses as JSON or an SSE stream.

Every body is hostile. Whatever this module is given (truncated JSON, binary, a gzip bomb, a deeply
nested or enormous value) it returns a `Message` or raises `Unreadable` with a one-line reason; it
never raises anything else. The judge blocks what it cannot read (judge.py): a guardrail that let an
unreadable body through would be bypassed by compressing or mangling it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from controlplane.inflate import BodyTooLarge, CorruptBody, TruncatedBody, bounded_inflate

MAX_BODY_BYTES = 4 * 1024 * 1024  # read at most this much, after decompression
MAX_STRINGS = 100_000  # string leaves of one message
MAX_DEPTH = 64
GZIP_MAGIC = b"\x1f\x8b"
NO_ID = object()  # a notification: no id at all (None is `"id": null`)


class Unreadable(ValueError):
    """A body the guardrail cannot read; its message is the block's reason detail."""


@dataclass(frozen=True)
class Message:
    """One JSON-RPC message: its id (NO_ID for a notification), method, and the value to judge."""

    id: Any = NO_ID
    method: str | None = None
    payload: Any = None  # a request's params (arguments for tools/call), a response's result
    strings: tuple[str, ...] = field(default=())


def decoded(body: bytes, content_encoding: str = "") -> bytes:
    """The body as sent, decompressed (gzip, deflate) within MAX_BODY_BYTES."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate") or body[:2] == GZIP_MAGIC:
        wbits = 31 if (encoding != "deflate" or body[:2] == GZIP_MAGIC) else 15
        try:
            return bounded_inflate(body, wbits=wbits, limit=MAX_BODY_BYTES)
        except (CorruptBody, TruncatedBody) as error:
            raise Unreadable(f"corrupt {encoding or 'gzip'} body: {error}") from None
        except BodyTooLarge:
            raise Unreadable(f"body is over {MAX_BODY_BYTES} bytes once decompressed") from None
    if encoding not in ("", "identity"):
        raise Unreadable(f"content-encoding {encoding[:40]!r} is not readable")
    if len(body) > MAX_BODY_BYTES:
        raise Unreadable(f"body is over {MAX_BODY_BYTES} bytes")
    return body


def json_documents(body: bytes, content_type: str = "") -> list[Any]:
    """The JSON values of a body: one for JSON, one per `data:` event for an SSE stream."""
    text = _utf8(body)
    if "text/event-stream" in content_type.lower() or text.lstrip().startswith(("event:", "data:", "id:", ":")):
        return [_parse(data) for data in sse_data(text)]
    return [_parse(text)]


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("body is not UTF-8 text") from None


def sse_data(text: str) -> Iterator[str]:
    """The data of each SSE event (multi-line `data:` fields joined), skipping events without data."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise Unreadable("JSON nested too deeply") from None
    except ValueError as error:
        raise Unreadable(f"not JSON: {str(error)[:80]}") from None


def string_leaves(value: Any) -> tuple[str, ...]:
    """Every string in a JSON value, keys included, depth-first; Unreadable past MAX_DEPTH or MAX_STRINGS."""
    found: list[str] = []
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Unreadable(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(k for k in item if isinstance(k, str))
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        if len(found) > MAX_STRINGS:
            raise Unreadable(f"JSON holds over {MAX_STRINGS} strings")
    return tuple(found)


def request_message(body: bytes, content_encoding: str = "") -> Message:
    """A JSON-RPC request (or notification); for tools/call the payload is `params.arguments`."""
    doc = _parse(_utf8(decoded(body, content_encoding)))
    if not isinstance(doc, dict):
        raise Unreadable("not a single JSON-RPC message")  # batches are gone from MCP since 2025-06-18
    method = doc.get("method")
    if not isinstance(method, str):  # a client's reply to a server's request (sampling, elicitation)
        payload = doc.get("result", doc.get("error"))
        return Message(doc.get("id", NO_ID), None, payload, string_leaves(payload))
    params = doc.get("params")
    payload = params.get("arguments") if method == "tools/call" and isinstance(params, dict) else params
    return Message(doc.get("id", NO_ID), method, payload, string_leaves(payload))


def response_messages(body: bytes, content_type: str = "", content_encoding: str = "") -> list[Message]:
    """The JSON-RPC messages of a response (one for JSON, any number in an SSE stream): results, and
    requests or notifications the server sends in the stream (their params are judged too)."""
    messages = []
    for doc in json_documents(decoded(body, content_encoding), content_type):
        if not isinstance(doc, dict):
            raise Unreadable("an SSE event or body that is not a JSON-RPC message")
        payload = doc.get("result", doc.get("error", doc.get("params")))
        messages.append(Message(doc.get("id", NO_ID), doc.get("method"), payload, string_leaves(payload)))
    return messages
