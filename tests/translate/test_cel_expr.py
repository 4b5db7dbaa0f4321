"""compile_condition: CEL source → google.api.expr.v1alpha1.Expr for Envoy RBAC `Policy.condition`.

Unit tests pin the AST shapes (cel-go's conventions) and the vocabulary rewrite; the slow tests hand the
compiled conditions to a real Envoy 1.40 and check that real MCP tools/call requests get 200 or 403.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import betterproto2
import pytest
from envoy_data_plane.google.api.expr.v1alpha1 import Expr

from controlplane.api.cel import CELError
from controlplane.api.cel_syntax import MCP_METADATA_NAMESPACE
from controlplane.translate.cel import compile_condition
from tests.support.envoy import free_ports
from tests.translate.cel_envoy import Listener, running_envoy, tools_call, validate, write_config

TOOL_NAME = f"metadata.filter_metadata[{json.dumps(MCP_METADATA_NAMESPACE)}].params.name"


# -- a compact rendering of an Expr, so shapes read like CEL -------------------------------------------------------

def render(expr: Expr) -> str:
    kind, value = betterproto2.which_one_of(expr, "expr_kind")
    return _RENDER[kind](value)


def _call(call) -> str:
    args = ", ".join(render(a) for a in call.args)
    if call.function == "_[_]":
        return f"{render(call.args[0])}[{render(call.args[1])}]"
    return f"{render(call.target)}.{call.function}({args})" if call.target else f"{call.function}({args})"


def _select(select) -> str:
    text = f"{render(select.operand)}.{select.field}"
    return f"has({text})" if select.test_only else text


def _const(const) -> str:
    kind, value = betterproto2.which_one_of(const, "constant_kind")
    return {
        "null_value": lambda: "null",
        "bool_value": lambda: "true" if value else "false",
        "int64_value": lambda: str(value),
        "uint64_value": lambda: f"{value}u",
        "double_value": lambda: f"{value!r}d",
        "string_value": lambda: json.dumps(value),
        "bytes_value": lambda: f"b{value!r}",
    }[kind]()


def _comprehension(c) -> str:
    return (f"fold({c.iter_var} in {render(c.iter_range)}; {c.accu_var} = {render(c.accu_init)}; "
            f"while {render(c.loop_condition)}; {render(c.loop_step)}; {render(c.result)})")


_RENDER = {
    "ident_expr": lambda ident: ident.name,
    "select_expr": _select,
    "call_expr": _call,
    "const_expr": _const,
    "list_expr": lambda lst: "[" + ", ".join(render(e) for e in lst.elements) + "]",
    "struct_expr": lambda s: "{" + ", ".join(f"{render(e.map_key)}: {render(e.value)}" for e in s.entries) + "}",
    "comprehension_expr": _comprehension,
}


def ids(expr: Expr) -> list[int]:
    """Every node id (struct entries included) in pre-order."""
    found = [expr.id]
    _, value = betterproto2.which_one_of(expr, "expr_kind")
    if value is None or isinstance(value, (str, int)):
        return found
    for child in _children(value):
        found += ids(child) if isinstance(child, Expr) else [child.id] + ids(child.map_key) + ids(child.value)
    return found


def _children(value) -> Iterator:
    for name in ("target", "operand", "iter_range", "accu_init", "loop_condition", "loop_step", "result"):
        child = getattr(value, name, None)
        if child is not None:
            yield child
    yield from getattr(value, "args", [])
    yield from getattr(value, "elements", [])
    yield from getattr(value, "entries", [])


def shape(expression: str, **kwargs) -> str:
    return render(compile_condition(expression, **kwargs))


# -- shapes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("a", "a"),
    ("a.b.c", "a.b.c"),
    (".a.b", ".a.b"),
    ("a[1]", "a[1]"),
    ("a['k'].b", 'a["k"].b'),
    ("size(x)", "size(x)"),
    ("x.size()", "x.size()"),
    (".f(1)", ".f(1)"),
    ("x.startsWith('a')", 'x.startsWith("a")'),
    ("x.endsWith('a') || x.contains('b')", '_||_(x.endsWith("a"), x.contains("b"))'),
    ("x.matches('^a$')", 'x.matches("^a$")'),
    ("t.getFullYear()", "t.getFullYear()"),
    ("f(a, b)", "f(a, b)"),
    ("(a)", "a"),
])
def test_identifiers_selects_index_and_calls(source: str, expected: str) -> None:
    assert shape(source) == expected


@pytest.mark.parametrize(("op", "function"), [
    ("&&", "_&&_"), ("||", "_||_"), ("==", "_==_"), ("!=", "_!=_"), ("<", "_<_"), ("<=", "_<=_"),
    (">", "_>_"), (">=", "_>=_"), ("+", "_+_"), ("-", "_-_"), ("*", "_*_"), ("/", "_/_"), ("%", "_%_"),
    ("in", "@in"),
])
def test_binary_operators(op: str, function: str) -> None:
    assert shape(f"a {op} b") == f"{function}(a, b)"


@pytest.mark.parametrize(("source", "expected"), [
    ("!a", "!_(a)"),
    ("-a", "-_(a)"),
    ("!!a", "!_(!_(a))"),
    ("a ? b : c", "_?_:_(a, b, c)"),
    ("a ? b : c ? d : e", "_?_:_(a, b, _?_:_(c, d, e))"),
    ("a || b && c", "_||_(a, _&&_(b, c))"),
    ("a && b && c", "_&&_(_&&_(a, b), c)"),
    ("a - b - c", "_-_(_-_(a, b), c)"),
    ("a + b * c % d", "_+_(a, _%_(_*_(b, c), d))"),
    ("a < b == c", "_==_(_<_(a, b), c)"),
    ("-(a + 1) * 2", "_*_(-_(_+_(a, 1)), 2)"),
])
def test_unary_ternary_and_precedence(source: str, expected: str) -> None:
    assert shape(source) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("'a'", '"a"'), ('"a"', '"a"'), ("'''x\ny'''", '"x\\ny"'), (r"'tab\t\x41\u00e9'", '"tab\\tA\\u00e9"'),
    (r"r'a\d'", '"a\\\\d"'), (r"'\\ \101 \U0001F600 \? \"'", json.dumps("\\ A \U0001F600 ? \"")),
    ("b'ab'", "b" + repr(b"ab")), (r"b'\xff\377\n'", "b" + repr(b"\xff\xff\n")), ("b'\u00e9'", "b" + repr(b"\xc3\xa9")),
    (r"br'\d'", "b" + repr(b"\\d")),
    ("42", "42"), ("-7", "-7"), ("0x1F", "31"), ("-9223372036854775808", "-9223372036854775808"),
    ("3u", "3u"), ("0x10U", "16u"), ("18446744073709551615u", "18446744073709551615u"),
    ("1.5", "1.5d"), ("1e3", "1000.0d"), ("-.5", "-0.5d"),
    ("true", "true"), ("false", "false"), ("null", "null"),
])
def test_constants(source: str, expected: str) -> None:
    assert shape(source) == expected


def test_zero_valued_constants_survive_serialization() -> None:
    """A oneof keeps its member even at the default value (0, false, ''): Envoy must see the kind."""
    for source, key in (("0", "int64Value"), ("0u", "uint64Value"), ("false", "boolValue"), ("''", "stringValue"),
                        ("0.0", "doubleValue"), ("b''", "bytesValue"), ("null", "nullValue")):
        assert key in compile_condition(source).to_dict()["constExpr"], source


@pytest.mark.parametrize("source", [r"'\q'", r"b'\u00e9'", r"'\ud800'", r"'\U00110000'"])
def test_invalid_escapes_are_refused(source: str) -> None:
    with pytest.raises(CELError, match="invalid escape"):
        compile_condition(source)


@pytest.mark.parametrize("source", ["9223372036854775808", "18446744073709551616u", "-1u"])
def test_out_of_range_integers_are_refused(source: str) -> None:
    with pytest.raises(CELError, match="out of range"):
        compile_condition(source)


@pytest.mark.parametrize(("source", "expected"), [
    ("[]", "[]"), ("[1, 'a', [true]]", '[1, "a", [true]]'),
    ("{}", "{}"), ("{'k': 1, 2: [x]}", '{"k": 1, 2: [x]}'),
    ("x in ['a', 'b']", '@in(x, ["a", "b"])'),
])
def test_list_and_map_literals(source: str, expected: str) -> None:
    assert shape(source) == expected


def test_has_is_a_test_only_select() -> None:
    expr = compile_condition("has(a.b.c)")
    assert expr.select_expr.test_only and expr.select_expr.field == "c"
    assert not expr.select_expr.operand.select_expr.test_only
    assert shape("has(request.headers.accept)") == "has(request.headers.accept)"
    assert shape("has(request.mcp.tool_name)") == f"has({TOOL_NAME})"


@pytest.mark.parametrize("source", ["has(a)", "has(a[1])", "has(f(x))"])
def test_has_needs_a_field_selection(source: str) -> None:
    with pytest.raises(CELError, match=r"has\(\) macro"):
        compile_condition(source)


@pytest.mark.parametrize("source", [
    "l.all(x, x > 0)", "l.exists(x, x > 0)", "l.exists_one(x, x > 0)", "l.map(x, x * 2)",
    "l.map(x, x > 0, x * 2)", "l.filter(x, x > 0)",
])
def test_comprehension_macros_are_refused_for_enforcement(source: str) -> None:
    with pytest.raises(CELError, match="not supported in enforcement"):
        compile_condition(source)


@pytest.mark.parametrize(("source", "expected"), [
    ("l.all(x, p)", ("fold(x in l; @result = true; while @not_strictly_false(@result); "
                    "_&&_(@result, p); @result)")),
    ("l.exists(x, p)", ("fold(x in l; @result = false; while @not_strictly_false(!_(@result)); "
                       "_||_(@result, p); @result)")),
    ("l.exists_one(x, p)", ("fold(x in l; @result = 0; while true; "
                           "_?_:_(p, _+_(@result, 1), @result); _==_(@result, 1))")),
    ("l.map(x, f)", "fold(x in l; @result = []; while true; _+_(@result, [f]); @result)"),
    ("l.map(x, p, f)", ("fold(x in l; @result = []; while true; "
                       "_?_:_(p, _+_(@result, [f]), @result); @result)")),
    ("l.filter(x, p)", ("fold(x in l; @result = []; while true; "
                       "_?_:_(p, _+_(@result, [x]), @result); @result)")),
])
def test_macros_expand_as_cel_go_does_when_asked(source: str, expected: str) -> None:
    assert shape(source, allow_comprehensions=True) == expected


def test_macro_shapes_only_for_matching_arity_and_simple_names() -> None:
    assert shape("l.all(x)") == "l.all(x)"  # not a macro: a plain receiver call
    assert shape("all(l, x, p)") == "all(l, x, p)"  # macros are receiver-style only
    with pytest.raises(CELError, match="simple name"):
        compile_condition("l.all(x.y, true)", allow_comprehensions=True)


def test_message_construction_is_refused() -> None:
    with pytest.raises(CELError, match="message construction"):
        compile_condition("google.protobuf.Int64Value{value: 1}")


def test_parse_errors_are_cel_errors() -> None:
    with pytest.raises(CELError, match="invalid CEL expression"):
        compile_condition("request.path ==")


# -- vocabulary --------------------------------------------------------------------------------------------------

def test_tool_name_reads_the_mcp_filter_metadata() -> None:
    assert shape("request.mcp.tool_name == 'get-sum'") == f'_==_({TOOL_NAME}, "get-sum")'
    assert shape("request.mcp.tool_name.matches('^get-')") == f'{TOOL_NAME}.matches("^get-")'


@pytest.mark.parametrize("attribute", ["path", "url_path", "method", "host", "headers", "time"])
def test_envoy_request_attributes_pass_through(attribute: str) -> None:
    assert shape(f"request.{attribute}") == f"request.{attribute}"


def test_pass_through_keeps_deeper_selects_and_indexes() -> None:
    assert shape("request.headers['x-a'] == request.headers.b") == '_==_(request.headers["x-a"], request.headers.b)'


@pytest.mark.parametrize(("source", "refused"), [
    ("request.foo == 1", "request.foo"),
    ("request.mcp == 1", "request.mcp"),
    ("request.mcp.tool_id == 'a'", "request.mcp.tool_id"),
    ("request.query.startsWith('a')", "request.query"),
    ("request['path'] == '/'", "'request' must be followed"),
    ("request == {}", "'request' must be followed"),
    (".request.path == '/'", "'.request' is not allowed"),
    ("[1].exists(x, request.foo)", "request.foo"),
])
def test_other_request_attributes_are_refused(source: str, refused: str) -> None:
    with pytest.raises(CELError, match=refused.replace(".", r"\.")):
        compile_condition(source, allow_comprehensions=True)


def test_request_inside_strings_is_just_text() -> None:
    assert shape("request.path == 'request.foo'") == '_==_(request.path, "request.foo")'


# -- ids -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    ("request.path.startsWith('/mc') && request.headers['mcp-protocol-version'].contains('2025') && "
    "request.mcp.tool_name.matches('^get-[a-z]+$')"),
    "{'a': [1, 2u, 3.0], b: {c: d}}[x] in y ? -z : !has(w.v)",
    "l.map(x, x > 0, x * 2).exists_one(y, y == 4)",
])
def test_ids_are_unique_and_increase_in_preorder(source: str) -> None:
    found = ids(compile_condition(source, allow_comprehensions=True))
    assert found == list(range(1, len(found) + 1))


def test_round_trips_through_the_json_mapping_and_the_wire() -> None:
    expr = compile_condition("request.mcp.tool_name in ['a', 'b'] && {'k': b'v'}['k'] != b'' && 1u < 2u")
    assert Expr.from_dict(json.loads(json.dumps(expr.to_dict()))) == expr
    assert Expr.parse(bytes(expr)) == expr


# -- real Envoy ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    expression: str  # `{port}` is this case's own listener port
    status: int
    request: dict = field(default_factory=dict)
    per_route: bool = False


UPSTREAM_E2E = (
    "request.path.startsWith('/mc') && request.headers['mcp-protocol-version'].contains('2025') && "
    "request.mcp.tool_name.matches('^get-[a-z]+$')"
)
CASES = [
    Case("tool-name", "request.mcp.tool_name == 'get-sum'", 200),
    Case("tool-name-other", "request.mcp.tool_name == 'echo'", 403),
    Case("tool-name-other-request", "request.mcp.tool_name == 'get-sum'", 403, {"tool": "echo"}),
    Case("upstream-macros", UPSTREAM_E2E, 200),
    Case("upstream-macros-tool", UPSTREAM_E2E, 403, {"tool": "echo"}),
    Case("upstream-macros-version", UPSTREAM_E2E, 403, {"protocol_version": "2024-11-05"}),
    Case("upstream-macros-path", UPSTREAM_E2E, 403, {"path": "/other"}),
    Case("path", "request.path == '/mcp'", 200),
    Case("path-wrong", "request.path == '/wrong'", 403),
    Case("path-with-query", "request.path == '/mcp?session=1'", 200, {"path": "/mcp?session=1"}),
    Case("url-path", "request.url_path == '/mcp'", 200, {"path": "/mcp?session=1"}),
    Case("url-path-wrong", "request.url_path == '/wrong'", 403),
    Case("method", "request.method == 'POST'", 200),
    Case("method-wrong", "request.method == 'GET'", 403),
    Case("host", "request.host.endsWith(':{port}')", 200),
    Case("host-wrong", "request.host.endsWith(':1')", 403),
    Case("header", "request.headers['mcp-protocol-version'] == '2025-11-25'", 200),
    Case("header-wrong", "request.headers['mcp-protocol-version'] == '1999-01-01'", 403),
    Case("time", "request.time.getFullYear() >= 2025", 200),
    Case("time-wrong", "request.time.getFullYear() < 2000", 403),
    Case("header-in", "'mcp-protocol-version' in request.headers", 200),
    Case("header-in-missing", "'x-missing' in request.headers", 403),
    Case("has-header", "has(request.headers.accept)", 200),
    Case("has-header-missing", "has(request.headers.x)", 403),
    Case("has-tool-name", "has(request.mcp.tool_name)", 200),
    Case("not-or", "!(request.method == 'GET') || request.mcp.tool_name == 'echo'", 200),
    Case("ternary-in", "(request.method == 'POST' ? request.mcp.tool_name : '') in ['get-sum', 'x']", 200),
    Case("size", "size(request.mcp.tool_name) == 7 && request.mcp.tool_name.size() == 7", 200),
    Case("constants-and-arithmetic",
         "b'ab' != b'' && 1u < 2u && 1.5 > 1.0 && null == null && -3 < 0 && 7 % 4 == 3 && "
         "{'k': 1}['k'] == 1 && [1, 2][1] == 2 && 2 * 3 - 1 == 5 && 6 / 2 == 3 && -(1) == -1 && "
         "1 <= 1 && 2 >= 1 && 1 != 2", 200),
    Case("constants-false", "1u > 2u || 0.5 >= 1.0 || {'k': 1}['k'] == 2", 403),
    Case("per-route", "request.mcp.tool_name == 'get-sum'", 200, per_route=True),
    Case("per-route-other", "request.mcp.tool_name == 'echo'", 403, per_route=True),
]


@pytest.fixture(scope="module")
def envoy_cases(tmp_path_factory):
    """One Envoy, one listener per case; yields {case name: listener port}."""
    ports = dict(zip((c.name for c in CASES), free_ports(len(CASES)), strict=True))
    listeners = [Listener(c.name, ports[c.name], compile_condition(c.expression.replace("{port}", str(ports[c.name]))),
                          per_route=c.per_route) for c in CASES]
    config = write_config(tmp_path_factory.mktemp("cel-envoy") / "envoy.yaml", listeners)
    with running_envoy(config, list(ports.values())):
        yield config, ports


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_envoy_enforces_the_compiled_condition(envoy_cases, case: Case) -> None:
    _, ports = envoy_cases
    status, body = tools_call(ports[case.name], **case.request)
    assert status == case.status, f"{case.expression!r} → {status} {body!r}"


@pytest.mark.slow
def test_envoy_validate_mode_accepts_the_config(envoy_cases) -> None:
    config, _ = envoy_cases
    result = validate(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout + result.stderr


@pytest.mark.slow
def test_envoy_refuses_comprehensions_which_is_why_macros_are_refused(tmp_path) -> None:
    condition = compile_condition("['get-sum'].exists(t, t == request.mcp.tool_name)", allow_comprehensions=True)
    config = write_config(tmp_path / "envoy.yaml", [Listener("fold", free_ports(1)[0], condition)])
    result = validate(config)
    assert result.returncode != 0
    assert "Comprehension support is disabled" in result.stdout + result.stderr
