"""CEL policy expressions as the checked syntax tree Envoy's RBAC filter will evaluate, without Envoy types.

Why this exists: an ``XAccessPolicy`` rule of type ``CEL`` is enforced by Envoy itself, through
``envoy.config.rbac.v3.Policy.condition``, which takes a *parsed* CEL AST
(``google.api.expr.v1alpha1.Expr``), not source text. Upstream (cel.go) gets that AST from cel-go; here
celpy's Lark parser gives us a concrete syntax tree and this module walks it, emitting the same node shapes
cel-go's parser emits: operators as calls to ``_&&_``, ``_==_``, ``@in``, ``_[_]``..., receiver calls with a
``target``, ``has()`` as a test-only select, and the ``all``/``exists``/``exists_one``/``map``/``filter``
macros expanded into comprehensions.

The nodes are plain ``CelNode``s named after the ``Expr`` fields they become; translate/cel.py turns them
into Envoy messages. Admission (api/cel.py) runs the same walk, so a policy Envoy could not enforce fails
admission with the same message the translation would raise, and ``api`` never builds Envoy messages.

On the way the policy vocabulary (``ALLOWED_VARIABLES``) is mapped onto Envoy 1.40:
``request.mcp.tool_name`` reads the MCP filter's dynamic metadata
(``metadata.filter_metadata['envoy.filters.http.mcp'].params.name``); ``request.path``, ``url_path``,
``method``, ``host``, ``headers`` and ``time`` are Envoy's own request attributes and pass through; any other
``request.`` attribute is refused, so a policy can never depend on something Envoy does not set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import celpy
import lark

ALLOWED_VARIABLES = ("request.mcp.tool_name", "request.path", "request.url_path", "request.method",
                     "request.host", "request.headers", "request.time")
MCP_METADATA_NAMESPACE = "envoy.filters.http.mcp"
ACCUMULATOR = "@result"  # cel-go's accumulator name in macro comprehensions
PASS_THROUGH = frozenset({"path", "url_path", "method", "host", "headers", "time"})

_BINARY = {
    "relation_lt": "_<_", "relation_le": "_<=_", "relation_gt": "_>_", "relation_ge": "_>=_",
    "relation_eq": "_==_", "relation_ne": "_!=_", "relation_in": "@in",
    "addition_add": "_+_", "addition_sub": "_-_",
    "multiplication_mul": "_*_", "multiplication_div": "_/_", "multiplication_mod": "_%_",
}
_UNARY = {"unary_not": "!_", "unary_neg": "-_"}
_PASSTHROUGH_RULES = frozenset({"expr", "conditionalor", "conditionaland", "relation", "addition",
                                "multiplication", "unary", "member", "primary", "paren_expr"})
_INT64 = (-(2**63), 2**63 - 1)
_ESCAPES = re.compile(r"""\\(?:(?P<simple>[abfnrtv"'`?\\])|(?P<octal>[0-3][0-7]{2})|x(?P<hex>[0-9a-fA-F]{2})"""
                      r"|(?P<uni>u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
NULL = "NULL_VALUE"  # the `null_value` of a null literal


class CELError(ValueError):
    """An expression that does not compile or uses a variable outside the vocabulary."""


@dataclass
class CelNode:
    """One node: `kind` is the `Expr` field it fills (`call_expr`, `ident_expr`, `select_expr`, `const_expr`,
    `list_expr`, `struct_expr`, `comprehension_expr`) or `entry` (a map entry); `fields` are that message's."""

    kind: str
    id: int
    fields: dict[str, Any] = field(default_factory=dict)


def parse_condition(expression: str, *, allow_comprehensions: bool = False) -> CelNode:
    """Parse a policy's CEL expression into the tree for ``Policy.condition``; CELError if unusable.

    The ``all``/``exists``/``exists_one``/``map``/``filter`` macros expand to comprehensions, which Envoy
    1.40 refuses at config load ("Comprehension support is disabled"; no ``cel_config`` knob turns them
    on), and one refused policy would NACK the whole resource it sits in. So they are a CELError unless
    ``allow_comprehensions`` asks for cel-go's expansion (for a runtime that accepts it).
    """
    try:
        tree = celpy.Environment().compile(expression)
    except celpy.CELParseError as err:
        raise CELError(f"invalid CEL expression: {err}".splitlines()[0]) from None
    return _Builder(allow_comprehensions).build(tree)


class _Builder:
    """One walk over one Lark tree; ids are handed out in pre-order (a parent's id is below its children's)."""

    def __init__(self, allow_comprehensions: bool) -> None:
        self._ids = iter(range(1, 2**31))
        self._allow_comprehensions = allow_comprehensions

    def next_id(self) -> int:
        return next(self._ids)

    # -- dispatch -------------------------------------------------------------------------------------------

    def build(self, tree: lark.Tree) -> CelNode:
        tree = _unwrap(tree)
        if tree.data in ("conditionalor", "conditionaland"):
            return self.call("_||_" if tree.data == "conditionalor" else "_&&_", None, tree.children)
        if tree.data in ("relation", "addition", "multiplication"):
            return self._binary(tree)
        if tree.data == "unary":
            return self.call(_UNARY[tree.children[0].data], None, tree.children[1:])
        if tree.data == "expr":
            return self.call("_?_:_", None, tree.children)
        handler: Callable[[lark.Tree], CelNode] | None = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise CELError(f"unsupported CEL construct {tree.data!r}")
        return handler(tree)

    # -- node constructors ------------------------------------------------------------------------------------

    def call(self, function: str, target: lark.Tree | None, args: list) -> CelNode:
        """A call node; `target` and `args` are Lark trees or zero-argument builders (so ids stay pre-order)."""
        node_id = self.next_id()
        target_expr = self._as_expr(target) if target is not None else None
        return CelNode("call_expr", node_id, {"target": target_expr, "function": function,
                                              "args": [self._as_expr(a) for a in args]})

    def ident(self, name: str) -> CelNode:
        return CelNode("ident_expr", self.next_id(), {"name": name})

    def select(self, operand: Callable[[], CelNode], field: str) -> CelNode:
        node_id = self.next_id()
        return CelNode("select_expr", node_id, {"operand": operand(), "field": field})

    def const(self, **value) -> CelNode:
        return CelNode("const_expr", self.next_id(), value)

    def _as_expr(self, node: lark.Tree | Callable[[], CelNode]) -> CelNode:
        return self.build(node) if isinstance(node, lark.Tree) else node()

    # -- grammar rules ----------------------------------------------------------------------------------------

    def _binary(self, tree: lark.Tree) -> CelNode:
        op_tree, right = tree.children
        left = op_tree.children[0]
        return self.call(_BINARY[op_tree.data], None, [left, right])

    def _literal(self, tree: lark.Tree) -> CelNode:
        token = tree.children[0]
        return self.const(**_constant(token))

    def _ident(self, tree: lark.Tree) -> CelNode:
        name = str(tree.children[0])
        if name == "request":
            raise CELError("'request' must be followed by one of its attributes: " + _vocabulary())
        return self.ident(name)

    def _dot_ident(self, tree: lark.Tree) -> CelNode:
        name = str(tree.children[0])
        if name == "request":
            raise CELError("'.request' is not allowed; use " + _vocabulary())
        return self.ident("." + name)

    def _member_dot(self, tree: lark.Tree) -> CelNode:
        path = _qualified_name(tree)
        if path and path[0].lstrip(".") == "request":
            return self._request_attribute(path)
        member, field = tree.children
        return self.select(lambda: self.build(member), str(field))

    def _member_index(self, tree: lark.Tree) -> CelNode:
        return self.call("_[_]", None, tree.children)

    def _member_dot_arg(self, tree: lark.Tree) -> CelNode:
        member, name, *rest = tree.children
        args = _exprlist(rest)
        macro = _RECEIVER_MACROS.get((str(name), len(args)))
        if macro is not None:
            if not self._allow_comprehensions:
                raise CELError(f"the {name}() macro is not supported in enforcement: Envoy's CEL runtime "
                               "does not evaluate comprehensions")
            return macro(self, member, args)
        return self.call(str(name), member, args)

    def _ident_arg(self, tree: lark.Tree) -> CelNode:
        name, *rest = tree.children
        args = _exprlist(rest)
        if str(name) == "has" and len(args) == 1:
            return self._has(args[0])
        return self.call(str(name), None, args)

    def _dot_ident_arg(self, tree: lark.Tree) -> CelNode:
        name, *rest = tree.children
        return self.call("." + str(name), None, _exprlist(rest))

    def _list_lit(self, tree: lark.Tree) -> CelNode:
        node_id = self.next_id()
        return CelNode("list_expr", node_id, {"elements": [self.build(e) for e in _exprlist(tree.children)]})

    def _map_lit(self, tree: lark.Tree) -> CelNode:
        node_id = self.next_id()
        items = tree.children[0].children if tree.children else []
        entries = [self._map_entry(k, v) for k, v in zip(items[::2], items[1::2], strict=True)]
        return CelNode("struct_expr", node_id, {"entries": entries})

    def _map_entry(self, key: lark.Tree, value: lark.Tree) -> CelNode:
        entry_id = self.next_id()
        return CelNode("entry", entry_id, {"map_key": self.build(key), "value": self.build(value)})

    def _member_object(self, tree: lark.Tree) -> CelNode:
        raise CELError("message construction (Type{field: ...}) is not supported in enforcement")

    # -- vocabulary -------------------------------------------------------------------------------------------

    def _request_attribute(self, path: list[str]) -> CelNode:
        """`request.<attr>[.more]`: map the vocabulary onto Envoy's attributes, refuse everything else."""
        if path[0] != "request":
            raise CELError("'.request' is not allowed; use " + _vocabulary())
        if path[1:3] == ["mcp", "tool_name"]:
            return self._selects(self._mcp_tool_name, path[3:])
        if len(path) > 1 and path[1] in PASS_THROUGH:
            return self._selects(lambda: self.ident("request"), path[1:])
        attribute = ".".join(path[:3] if path[1:2] == ["mcp"] else path[:2])
        raise CELError(f"unsupported variable {attribute!r}; allowed: {_vocabulary()}")

    def _selects(self, base: Callable[[], CelNode], fields: list[str]) -> CelNode:
        if not fields:
            return base()
        return self.select(lambda: self._selects(base, fields[:-1]), fields[-1])

    def _mcp_tool_name(self) -> CelNode:
        """metadata.filter_metadata['envoy.filters.http.mcp'].params.name"""
        def namespace() -> CelNode:
            return self.call("_[_]", None, [
                lambda: self.select(lambda: self.ident("metadata"), "filter_metadata"),
                lambda: self.const(string_value=MCP_METADATA_NAMESPACE),
            ])
        return self._selects(namespace, ["params", "name"])

    # -- macros -----------------------------------------------------------------------------------------------

    def _has(self, arg: lark.Tree) -> CelNode:
        expr = self.build(arg)
        if expr.kind != "select_expr":
            raise CELError("invalid argument to has() macro: it must be a field selection such as has(a.b)")
        expr.fields["test_only"] = True
        return expr

    def _comprehension(self, target: lark.Tree, var: lark.Tree, init: Callable[[], CelNode],
                       condition: Callable[[], CelNode], step: Callable[[], CelNode],
                       result: Callable[[], CelNode]) -> CelNode:
        node_id = self.next_id()
        return CelNode("comprehension_expr", node_id, {
            "iter_var": _simple_name(var), "iter_range": self.build(target), "accu_var": ACCUMULATOR,
            "accu_init": init(), "loop_condition": condition(), "loop_step": step(), "result": result()})

    def _accu(self) -> CelNode:
        return self.ident(ACCUMULATOR)

    def _not_strictly_false(self, arg: Callable[[], CelNode]) -> CelNode:
        return self.call("@not_strictly_false", None, [arg])

    def _macro_all(self, target: lark.Tree, args: list) -> CelNode:
        var, predicate = args
        return self._comprehension(
            target, var, lambda: self.const(bool_value=True),
            lambda: self._not_strictly_false(self._accu),
            lambda: self.call("_&&_", None, [self._accu, predicate]), self._accu)

    def _macro_exists(self, target: lark.Tree, args: list) -> CelNode:
        var, predicate = args
        return self._comprehension(
            target, var, lambda: self.const(bool_value=False),
            lambda: self._not_strictly_false(lambda: self.call("!_", None, [self._accu])),
            lambda: self.call("_||_", None, [self._accu, predicate]), self._accu)

    def _macro_exists_one(self, target: lark.Tree, args: list) -> CelNode:
        var, predicate = args

        def increment() -> CelNode:
            return self.call("_+_", None, [self._accu, lambda: self.const(int64_value=1)])

        return self._comprehension(
            target, var, lambda: self.const(int64_value=0), lambda: self.const(bool_value=True),
            lambda: self.call("_?_:_", None, [predicate, increment, self._accu]),
            lambda: self.call("_==_", None, [self._accu, lambda: self.const(int64_value=1)]))

    def _macro_map(self, target: lark.Tree, args: list) -> CelNode:
        var, *predicate, transform = args
        return self._append_loop(target, var, predicate[0] if predicate else None, transform)

    def _macro_filter(self, target: lark.Tree, args: list) -> CelNode:
        var, predicate = args
        return self._append_loop(target, var, predicate, var)

    def _append_loop(self, target: lark.Tree, var: lark.Tree, predicate: lark.Tree | None,
                     element: lark.Tree) -> CelNode:
        """`map`/`filter`: accumulate `[element]` for each item (that satisfies `predicate`, if any)."""
        def append() -> CelNode:
            return self.call("_+_", None, [self._accu, lambda: self._list_of(element)])

        def step() -> CelNode:
            if predicate is None:
                return append()
            return self.call("_?_:_", None, [predicate, append, self._accu])

        return self._comprehension(
            target, var, lambda: CelNode("list_expr", self.next_id()),
            lambda: self.const(bool_value=True), step, self._accu)

    def _list_of(self, element: lark.Tree) -> CelNode:
        node_id = self.next_id()
        return CelNode("list_expr", node_id, {"elements": [self.build(element)]})


_RECEIVER_MACROS: dict[tuple[str, int], Callable[[_Builder, lark.Tree, list], CelNode]] = {
    ("all", 2): _Builder._macro_all,
    ("exists", 2): _Builder._macro_exists,
    ("exists_one", 2): _Builder._macro_exists_one,
    ("map", 2): _Builder._macro_map,
    ("map", 3): _Builder._macro_map,
    ("filter", 2): _Builder._macro_filter,
}


# -- tree helpers -------------------------------------------------------------------------------------------------

def _unwrap(tree: lark.Tree) -> lark.Tree:
    """Skip the single-child precedence levels (expr → conditionalor → ... → primary)."""
    while tree.data in _PASSTHROUGH_RULES and len(tree.children) == 1 and isinstance(tree.children[0], lark.Tree):
        tree = tree.children[0]
    return tree


def _exprlist(rest: list) -> list[lark.Tree]:
    """The `expr` children of an optional `exprlist` node."""
    return list(rest[0].children) if rest else []


def _qualified_name(tree: lark.Tree) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'] (a leading-dot root keeps its dot); None when not a plain dotted name."""
    tree = _unwrap(tree)
    if tree.data == "member_dot":
        head = _qualified_name(tree.children[0])
        return None if head is None else [*head, str(tree.children[1])]
    if tree.data == "ident":
        return [str(tree.children[0])]
    if tree.data == "dot_ident":
        return ["." + str(tree.children[0])]
    return None


def _simple_name(tree: lark.Tree) -> str:
    name = _qualified_name(tree)
    if name is None or len(name) != 1 or name[0].startswith("."):
        raise CELError("the first argument of a macro must be a simple name, as in list.all(x, x > 0)")
    return name[0]


def _constant(token: lark.Token) -> dict:
    """Constant fields for one literal token."""
    kind, text = token.type, token.value
    if kind == "INT_LIT":
        return {"int64_value": _integer(text, _INT64)}
    if kind == "UINT_LIT":
        return {"uint64_value": _integer(text[:-1], (0, 2**64 - 1))}
    if kind == "FLOAT_LIT":
        return {"double_value": float(text)}
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return {"string_value": _string(text)}
    if kind == "BYTES_LIT":
        return {"bytes_value": _bytes(text)}
    if kind == "BOOL_LIT":
        return {"bool_value": text == "true"}
    if kind == "NULL_LIT":
        return {"null_value": NULL}
    raise CELError(f"unsupported literal {text!r}")


def _integer(text: str, bounds: tuple[int, int]) -> int:
    negative = text.startswith("-")
    digits = text.lstrip("-")
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
    value = -value if negative else value
    if not bounds[0] <= value <= bounds[1]:
        raise CELError(f"integer literal {text!r} is out of range")
    return value


def _quoted_body(text: str) -> tuple[str, str]:
    """(prefix letters, text between the quotes) of a string or bytes literal."""
    prefix = re.match(r"[rRbB]*", text).group()
    quotes = 3 if text[len(prefix):len(prefix) + 3] in ('"""', "'''") else 1
    return prefix.lower(), text[len(prefix) + quotes:-quotes]


def _escape(match: re.Match, in_bytes: bool) -> str | int:
    """One escape sequence: a str for strings, an int (byte) for bytes where CEL says it is a byte."""
    simple, octal, hex2, uni = match.group("simple", "octal", "hex", "uni")
    if simple is not None:
        return _SIMPLE_ESCAPES.get(simple, simple)
    if octal or hex2:
        code = int(octal, 8) if octal else int(hex2, 16)
        return code if in_bytes else chr(code)
    code = int(uni[1:], 16) if uni else -1
    if not in_bytes and (0 <= code < 0xD800 or 0xE000 <= code <= 0x10FFFF):
        return chr(code)
    raise CELError(f"invalid escape sequence {match.group()!r} in a literal")


def _string(text: str) -> str:
    prefix, body = _quoted_body(text)
    if "r" in prefix:
        return body
    return _ESCAPES.sub(lambda m: _escape(m, in_bytes=False), body)


def _bytes(text: str) -> bytes:
    prefix, body = _quoted_body(text)
    if "r" in prefix:
        return body.encode()
    out, last = bytearray(), 0
    for match in _ESCAPES.finditer(body):
        out += body[last:match.start()].encode()
        value = _escape(match, in_bytes=True)
        out += bytes([value]) if isinstance(value, int) else value.encode()
        last = match.end()
    return bytes(out + body[last:].encode())


def _vocabulary() -> str:
    return ", ".join(ALLOWED_VARIABLES)

