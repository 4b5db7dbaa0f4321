"""A policy's CEL expression -> the `google.api.expr` message Envoy's RBAC `Policy.condition` takes.

The walk, its checks and its errors live in api/cel_syntax.py (admission runs the same walk); this module
only turns its plain nodes into Envoy's messages, so that `api` never builds Envoy types.
"""

from __future__ import annotations

from typing import Any

from envoy_data_plane.google.api.expr.v1alpha1 import (
    Constant,
    Expr,
    ExprCall,
    ExprComprehension,
    ExprCreateList,
    ExprCreateStruct,
    ExprCreateStructEntry,
    ExprIdent,
    ExprSelect,
)
from envoy_data_plane.google.protobuf import NullValue

from controlplane.api.cel_syntax import NULL, CelNode, parse_condition

_MESSAGES = {"call_expr": ExprCall, "ident_expr": ExprIdent, "select_expr": ExprSelect, "const_expr": Constant,
             "list_expr": ExprCreateList, "struct_expr": ExprCreateStruct, "comprehension_expr": ExprComprehension}


def compile_condition(expression: str, *, allow_comprehensions: bool = False) -> Expr:
    """The ``Expr`` for ``Policy.condition``; CELError if Envoy could not enforce the expression."""
    return to_expr(parse_condition(expression, allow_comprehensions=allow_comprehensions))


def to_expr(node: CelNode) -> Expr:
    fields = {name: _convert(name, value) for name, value in node.fields.items()}
    if node.kind == "entry":
        return ExprCreateStructEntry(id=node.id, **fields)
    return Expr(id=node.id, **{node.kind: _MESSAGES[node.kind](**fields)})


def _convert(name: str, value: Any) -> Any:
    if isinstance(value, CelNode):
        return to_expr(value)
    if isinstance(value, list):
        return [_convert(name, item) for item in value]
    if name == "null_value" and value == NULL:
        return NullValue.NULL_VALUE
    return value
