"""CEL authorization expressions: checked at admission, evaluated offline by `explain`.

The vocabulary is upstream's (pkg/translator/cel.go): `request.mcp.tool_name`, `request.path`,
`request.url_path`, `request.method`, `request.host`, `request.headers`, `request.time`. Anything else
under `request.` is refused, so a policy cannot silently depend on an attribute Envoy never sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes

from controlplane.api.cel_syntax import ALLOWED_VARIABLES, CELError, parse_condition

_REQUEST_ATTR = re.compile(r"\brequest((?:\.[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_]|\s*\())+)")


@lru_cache(maxsize=1024)
def compile_expression(expression: str) -> celpy.Runner:
    """Compile once (cached); raise CELError with a message fit for a status condition."""
    for match in _REQUEST_ATTR.finditer(_strip_strings(expression)):
        attribute = "request" + match.group(1)
        if not any(attribute == v or attribute.startswith(v + ".") for v in ALLOWED_VARIABLES):
            raise CELError(f"unsupported variable {attribute!r}; allowed: {', '.join(ALLOWED_VARIABLES)}")
    env = celpy.Environment()
    try:
        ast = env.compile(expression)
    except celpy.CELParseError as err:
        raise CELError(f"invalid CEL expression: {err}".splitlines()[0]) from None
    _check_enforceable(expression)
    return env.program(ast)


def _check_enforceable(expression: str) -> None:
    """Refuse what Envoy cannot enforce (e.g. comprehension macros), so a policy fails admission with
    InvalidCEL instead of failing its Gateway's translation later (the same walk builds its Envoy form)."""
    parse_condition(expression)


def evaluate(expression: str, request: Mapping[str, Any]) -> bool:
    """True when the expression holds for `request`; an evaluation error counts as false, as in Envoy RBAC."""
    program = compile_expression(expression)
    try:
        result = program.evaluate({"request": _to_cel(request)})
    except Exception:  # noqa: BLE001 - celpy raises several types for missing keys and type errors
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def request_attributes(*, path: str, method: str, host: str, headers: Mapping[str, str],
                       tool_name: str | None, now: datetime | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "url_path": path.split("?", 1)[0],
        "method": method,
        "host": host,
        "headers": {k.lower(): v for k, v in headers.items()},
        "time": now or datetime.now(UTC),
        "mcp": {"tool_name": tool_name} if tool_name is not None else {},
    }


def _to_cel(value: Any) -> Any:
    if isinstance(value, datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): _to_cel(v) for k, v in value.items()})
    return celpy.json_to_cel(value)


def _strip_strings(expression: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", expression)
