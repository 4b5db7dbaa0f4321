"""Validate a custom resource against a CRD the way a kube-apiserver would, without one.

Why: the project promises that upstream kube-agentic-networking manifests mean the same here. The
chart ships upstream's CRDs; this module is the offline oracle for "would the cluster accept this
document?", against which the project's own pydantic validation is compared.

What the apiserver does on create, and what this module mirrors, in order:
1. pick the CRD version named by `apiVersion` (it must be served);
2. drop `null` values of non-nullable fields (the apiserver prunes them), then apply `default`s;
3. OpenAPI v3 schema validation, translated to JSON Schema (`nullable`, OpenAPI's boolean
   `exclusiveMinimum/Maximum`, `x-kubernetes-int-or-string`; `format` int32/int64/date-time are
   checked); fields the schema does not know are errors, as `kubectl apply`'s default strict field
   validation reports them (unless `x-kubernetes-preserve-unknown-fields`);
4. `x-kubernetes-list-type: set|map` uniqueness;
5. every `x-kubernetes-validations` CEL rule at its schema node, with `self` bound to the node's
   (defaulted) value, evaluated by cel-python; a rule that returns false or fails to evaluate is an
   error. Nodes absent from the document are skipped. Transition rules (those using `oldSelf`) are
   skipped, as on create.

Not modelled: CEL cost limits, CEL type-checking against the schema, metadata beyond
name/namespace, and the Kubernetes CEL extension libraries (the upstream rules use none).

Public API:
    validate_against_crd(crd, doc) -> list[str]      errors, empty when valid
    crd_problems(crd, doc) -> list[tuple[str, str]]    the same as (field path, message) pairs
    crd_matches(crd, doc) -> bool                      crd defines doc's group and kind
    validate_with_crds(crds, doc) -> list[str]         picks the matching CRD first
    load_crds(path) -> list[dict]                      CRDs from a file or a folder of YAML files
Each error reads `FIELD.PATH: message`, with the path where the apiserver puts it (a missing or
unknown field at the field itself, a list-type duplicate at the item, a CEL rule at its node), e.g.
    "spec.rules[0].authorization: cel must be specified when type is set to 'CEL' (rule: ...)",
    "spec.mcp.port: Required value", "spec.rules[0].authorization.tools: unknown field".
Import it as `tests.helm.crd_validation` from the repository root.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

__all__ = ["crd_matches", "crd_problems", "format_path", "load_crds", "validate_against_crd", "validate_with_crds"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REQUIRED = re.compile(r"^'(.+)' is a required property$")


# --- public API ---------------------------------------------------------------------------------------


def crd_matches(crd: dict, doc: dict) -> bool:
    """True when `crd` defines the group and kind of `doc`."""
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == doc.get("kind")


def validate_against_crd(crd: dict, doc: dict) -> list[str]:
    """Errors the apiserver would report when `doc` is created under `crd`, as `FIELD.PATH: message`;
    empty when valid."""
    return [f"{path}: {message}" for path, message in crd_problems(crd, doc)]


def crd_problems(crd: dict, doc: dict) -> list[tuple[str, str]]:
    """The same errors as (field path, message) pairs, e.g. ('spec.rules[0].source', 'Required value')."""
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    if not crd_matches(crd, doc):
        return [("apiVersion", (f"{doc.get('apiVersion')}/{doc.get('kind')} is not defined by CRD "
                               f"{crd['metadata']['name']}"))]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    spec_version = versions.get(version)
    if spec_version is None or not spec_version.get("served", False):
        served = sorted(n for n, v in versions.items() if v.get("served"))
        return [("apiVersion", f"version {version!r} of {group} is not served (served: {', '.join(served)})")]
    schema = spec_version["schema"]["openAPIV3Schema"]

    obj = _prune_and_default(_plain(doc), schema)
    problems = _metadata_problems(obj.get("metadata"))
    problems += _schema_problems(schema, obj)
    problems += _list_type_problems(schema, obj, ())
    problems += _cel_problems(schema, obj, ())
    return problems


def validate_with_crds(crds: Iterable[dict], doc: dict) -> list[str]:
    """Validate `doc` against whichever of `crds` defines its kind."""
    for crd in crds:
        if crd_matches(crd, doc):
            return validate_against_crd(crd, doc)
    return [f"apiVersion: no CRD defines {doc.get('apiVersion')}/{doc.get('kind')}"]


def load_crds(path: str | Path) -> list[dict]:
    """Every CustomResourceDefinition in a YAML file, or in the *.yaml files of a folder."""
    path = Path(path)
    files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    crds = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def format_path(path: Iterable[str | int]) -> str:
    """('spec', 'rules', 0, 'name') -> 'spec.rules[0].name'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


# --- plain data, pruning of nulls, defaulting -------------------------------------------------------


def _plain(value: Any) -> Any:
    """YAML may yield datetimes; the apiserver sees JSON strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else (text if value.tzinfo else text + "Z")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return copy.copy(value)


def _prune_and_default(value: Any, schema: dict) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        out = {}
        for key, child in value.items():
            sub = props.get(key, extra)
            if child is None and not (sub or {}).get("nullable", False):
                continue  # null on a non-nullable field: pruned, then possibly defaulted below
            out[key] = _prune_and_default(child, sub) if sub else child
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = _prune_and_default(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_and_default(v, schema["items"]) for v in value]
    return value


def _metadata_problems(metadata: Any) -> list[tuple[str, str]]:
    if not isinstance(metadata, dict):
        return [("metadata", "Required value")]
    problems = []
    if not (metadata.get("name") or metadata.get("generateName")):
        problems.append(("metadata.name", "Required value: name or generateName is required"))
    namespace = metadata.get("namespace")
    if namespace is not None and not (isinstance(namespace, str) and _DNS_LABEL.match(namespace)
                                      and len(namespace) <= 63):
        problems.append(("metadata.namespace", f"Invalid value: {namespace!r}: must be a DNS label"))
    return problems


# --- OpenAPI v3 (Kubernetes structural schema) -> JSON Schema -----------------------------------------

_PASSTHROUGH = {
    "type", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties", "minimum", "maximum", "multipleOf", "required", "format",
}


def _to_json_schema(node: dict, *, top: bool = False) -> dict:
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in node.items() if k in _PASSTHROUGH}
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: _to_json_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = _to_json_schema(node["items"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = _to_json_schema(additional)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # strict field validation: unknown fields are errors
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [_to_json_schema(s) for s in node[key]]
    if "not" in node:
        out["not"] = _to_json_schema(node["not"])
    if top:
        out["$schema"] = "http://json-schema.org/draft-07/schema#"
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("int32")
def _is_int32(value: Any) -> bool:
    return not isinstance(value, int) or _INT32[0] <= value <= _INT32[1]


@_FORMATS.checks("int64")
def _is_int64(value: Any) -> bool:
    return not isinstance(value, int) or _INT64[0] <= value <= _INT64[1]


@_FORMATS.checks("date-time")
def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        _dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


# Keyed by id(); the schema is kept in the value so that its id cannot be reused while cached.
_VALIDATORS: dict[int, tuple[dict, jsonschema.Draft7Validator]] = {}


def _validator(schema: dict) -> jsonschema.Draft7Validator:
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = (schema, jsonschema.Draft7Validator(_to_json_schema(schema, top=True), format_checker=_FORMATS))
        _VALIDATORS[id(schema)] = hit
    return hit[1]


def _schema_problems(schema: dict, obj: dict) -> list[tuple[str, str]]:
    """JSON Schema errors, with paths as the apiserver words them: a missing or unknown field is
    reported at the field itself, not at its parent."""
    problems = []
    for error in sorted(_validator(schema).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = set(error.schema.get("properties", {}))
            problems += [(format_path((*path, k)), "unknown field") for k in sorted(error.instance) if k not in known]
        elif error.validator == "required" and (missing := _REQUIRED.match(error.message)):
            problems.append((format_path((*path, missing.group(1))), "Required value"))
        else:
            problems.append((format_path(path), _k8s_message(error)))
    return problems


def _k8s_message(error: jsonschema.ValidationError) -> str:
    """The apiserver's wording for the common keywords; it never echoes a whole list or object."""
    value, instance = error.validator_value, error.instance
    match error.validator:
        case "maxItems":
            return f"Too many: {len(instance)}: must have at most {value} items"
        case "minItems":
            return f"Invalid value: {len(instance)} items: should have at least {value} items"
        case "maxLength":
            return f"Too long: may not be more than {value} bytes"
        case "minLength":
            return f"Invalid value: {instance!r}: should be at least {value} chars long"
        case "enum":
            return f"Unsupported value: {instance!r}: supported values: {', '.join(map(repr, value))}"
        case "pattern":
            return f"Invalid value: {instance!r}: should match '{value}'"
        case "maximum":
            return f"Invalid value: {instance!r}: should be less than or equal to {value}"
        case "minimum":
            return f"Invalid value: {instance!r}: should be greater than or equal to {value}"
        case "type":
            return f"Invalid value: {type(instance).__name__}: must be of type {value}"
    return error.message


# --- x-kubernetes-list-type -----------------------------------------------------------------------


def _list_type_problems(schema: dict, value: Any, path: tuple) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        for key, child in value.items():
            sub = props.get(key, extra)
            if sub:
                errors += _list_type_problems(sub, child, (*path, key))
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen = []
            for i, item in enumerate(value):
                if item in seen:
                    errors.append((format_path((*path, i)), f"Duplicate value: {item!r}"))
                seen.append(item)
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen_keys = []
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    key = tuple(item.get(k) for k in keys)
                    if key in seen_keys:
                        shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key))
                        errors.append((format_path((*path, i)), f"Duplicate value: map key {shown}"))
                    seen_keys.append(key)
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += _list_type_problems(schema["items"], item, (*path, i))
    return errors


# --- x-kubernetes-validations (CEL) ---------------------------------------------------------------

_CEL_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _cel_program(expression: str) -> celpy.Runner:
    return _CEL_ENV.program(_CEL_ENV.compile(expression))


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _has_schema_type(schema: dict, value: Any) -> bool:
    """A value of the wrong type is reported by the schema check; its CEL rules are not run."""
    declared = schema.get("type")
    if declared in ("integer", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return declared not in _JSON_TYPES or isinstance(value, _JSON_TYPES[declared])


def _cel_problems(schema: dict, value: Any, path: tuple) -> list[tuple[str, str]]:
    if not _has_schema_type(schema, value):
        return []
    errors: list[tuple[str, str]] = []
    for rule in schema.get("x-kubernetes-validations", []):
        errors += _check_rule(rule, value, path)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        for key, child in value.items():
            sub = props.get(key, extra)
            if sub:
                errors += _cel_problems(sub, child, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _cel_problems(schema["items"], item, (*path, i))
    return errors


def _check_rule(rule: dict, value: Any, path: tuple) -> list[tuple[str, str]]:
    expression = rule["rule"]
    if re.search(r"\boldSelf\b", expression):
        return []  # transition rule: only evaluated on update
    where = format_path(path) + (rule.get("fieldPath") or "")
    activation = {"self": celpy.json_to_cel(value)}
    try:
        result = _cel_program(expression).evaluate(activation)
    except Exception as exc:  # noqa: BLE001 - celpy raises several types; any is an evaluation error
        return [(where, f"rule evaluation error: {exc} (rule: {expression})")]
    if isinstance(result, celpy.CELEvalError):
        detail = result.args[0] if result.args else result
        return [(where, f"rule evaluation error: {detail} (rule: {expression})")]
    if result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
        return []
    if not isinstance(result, (bool, celpy.celtypes.BoolType)):
        return [(where, f"rule returned {type(result).__name__}, not bool (rule: {expression})")]
    message = rule.get("message") or f"failed rule: {expression}"
    if rule.get("messageExpression"):
        # The apiserver falls back to `message` when messageExpression fails.
        with contextlib.suppress(Exception):
            message = str(_cel_program(rule["messageExpression"]).evaluate(activation))
    return [(where, f"{message} (rule: {expression})")]
