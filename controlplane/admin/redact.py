"""Redaction of secret material in JSON renderings of Envoy config.

Debug output must never carry private keys (gcp#601). We redact by field name rather
than by message type, so a key inlined anywhere (a Secret, a DownstreamTlsContext in a
Listener, a generic secret) is caught; field names are compared without case or
underscores so both proto (private_key) and JSON (privateKey) spellings match.
"""

from __future__ import annotations

from typing import Any

REDACTED = "[redacted]"
_SECRET_FIELDS = frozenset(
    {
        "privatekey",
        "password",
        "secret",
        "secrets",
        "sessionticketkeys",
        "pkcs12",
        "hmacsecret",
    }
)


def _is_secret(key: str) -> bool:
    return key.replace("_", "").lower() in _SECRET_FIELDS


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with every secret field's value replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: (REDACTED if _is_secret(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
