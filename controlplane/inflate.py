"""Bounded decompression: a small compressed body (a "zip bomb") can never grow past `limit` in memory.

A leaf shared by the two services that read bodies Envoy sends them (controlplane/guardrail/,
controlplane/toolfilter/); each words its own refusal.
"""

from __future__ import annotations

import zlib


class CorruptBody(ValueError):
    """The bytes do not inflate."""


class BodyTooLarge(ValueError):
    """The body inflates past the limit."""


class TruncatedBody(ValueError):
    """The compressed stream ends before its end marker."""


def bounded_inflate(body: bytes, *, wbits: int, limit: int) -> bytes:
    """`body` inflated (wbits 31: gzip framing, 15: zlib/deflate), at most `limit` bytes of it."""
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise CorruptBody(str(error)) from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"over {limit} bytes")
    if not inflater.eof:
        raise TruncatedBody("truncated")
    return plain
