"""RBACPerRoute bytes from each Policy's cached bytes.

A target's RBACPerRoute holds every rule of its policies twice (`rules`, and `shadowRules` for the
access log), and betterproto2 re-validates and re-encodes all of them whenever one changes. Here the
wrapper is written by hand and each Policy message comes from `policy_bytes` (serialize.py serializes
each distinct policy once), so an edit of one policy encodes that policy's rules only, once each.
Fields are written in betterproto2's order (the proto's declaration order): the bytes equal
betterproto2's, which tests/xds/test_rbac_encoding.py checks on generated messages.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.xds.wire import len_field, str_field, varint

RBAC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
POLICY_TYPE = "type.googleapis.com/envoy.config.rbac.v3.Policy"
ACTIONS = {"ALLOW": 0, "DENY": 1, "LOG": 2}  # envoy.config.rbac.v3.RBAC.Action
_FILTER_FIELDS = {"rules": 1, "rulesStatPrefix": 6, "shadowRules": 2, "shadowRulesStatPrefix": 3}  # in order
_CONFIG_FIELDS = {"action", "policies"}


def encodable(payload: dict) -> bool:
    """Whether `payload` (an RBACPerRoute as proto3 JSON) uses only the fields written here."""
    rbac = payload.get("rbac", {})
    return (set(payload) <= {"@type", "rbac"} and isinstance(rbac, dict) and set(rbac) <= set(_FILTER_FIELDS)
            and all(_config_encodable(rbac[key]) for key in ("rules", "shadowRules") if key in rbac))


def _config_encodable(config: object) -> bool:
    return (isinstance(config, dict) and set(config) <= _CONFIG_FIELDS
            and config.get("action", "ALLOW") in ACTIONS and isinstance(config.get("policies", {}), dict))


def encode_rbac_per_route(payload: dict, policy_bytes: Callable[[dict], bytes]) -> bytes:
    """RBACPerRoute{rbac=2: RBAC{rules=1, rules_stat_prefix=6, shadow_rules=2, shadow_rules_stat_prefix=3}}."""
    if "rbac" not in payload:
        return b""
    rbac, parts = payload["rbac"], []
    for key, number in _FILTER_FIELDS.items():
        if key not in rbac:
            continue
        if key.endswith("StatPrefix"):
            parts.append(str_field(number, rbac[key]))
        else:
            parts.append(len_field(number, _config(rbac[key], policy_bytes)))
    return len_field(2, b"".join(parts))


def _config(config: dict, policy_bytes: Callable[[dict], bytes]) -> bytes:
    """envoy.config.rbac.v3.RBAC{action=1 (enum, omitted when ALLOW), policies=2 (map<string, Policy>)}."""
    action = ACTIONS[config.get("action", "ALLOW")]
    head = (varint(1 << 3) + varint(action)) if action else b""
    entries = (len_field(2, str_field(1, name) + len_field(2, policy_bytes(policy)))
               for name, policy in config.get("policies", {}).items())
    return head + b"".join(entries)
