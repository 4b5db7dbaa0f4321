"""Turn a decoded YAML/JSON document into the resource model of its kind.

Kinds are looked up by (group, version, kind). Documents of kinds this project does not read are
skipped (None). A document that cannot be taken raises `InvalidResource` (and nothing else, whatever
the document holds) with one `Problem` per reason, each naming the field path in Kubernetes style (`spec.rules[0].authorization.cel`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from controlplane.api import agentic, core, gateway, governance
from controlplane.api.base import Problem, Resource

MODELS: dict[tuple[str, str, str], type[Resource]] = {
    (agentic.GROUP, "v1alpha1", "XAccessPolicy"): agentic.XAccessPolicy,
    (agentic.GROUP, "v0alpha0", "XAccessPolicy"): agentic.XAccessPolicyV0,
    (agentic.GROUP, "v0alpha0", "XBackend"): agentic.XBackend,
    (governance.GOVERNANCE_GROUP, "v1alpha1", "RateLimitPolicy"): governance.RateLimitPolicy,
    (governance.GOVERNANCE_GROUP, "v1alpha1", "GuardrailPolicy"): governance.GuardrailPolicy,
    (gateway.GATEWAY_GROUP, "v1", "GatewayClass"): gateway.GatewayClass,
    (gateway.GATEWAY_GROUP, "v1beta1", "GatewayClass"): gateway.GatewayClass,
    (gateway.GATEWAY_GROUP, "v1", "Gateway"): gateway.Gateway,
    (gateway.GATEWAY_GROUP, "v1beta1", "Gateway"): gateway.Gateway,
    (gateway.GATEWAY_GROUP, "v1", "HTTPRoute"): gateway.HTTPRoute,
    (gateway.GATEWAY_GROUP, "v1beta1", "HTTPRoute"): gateway.HTTPRoute,
    (gateway.GATEWAY_GROUP, "v1beta1", "ReferenceGrant"): gateway.ReferenceGrant,
    (gateway.GATEWAY_GROUP, "v1", "ReferenceGrant"): gateway.ReferenceGrant,
    ("", "v1", "Namespace"): core.Namespace,
    ("", "v1", "Service"): core.Service,
    ("", "v1", "ServiceAccount"): core.ServiceAccount,
    ("", "v1", "Pod"): core.Pod,
    ("", "v1", "ConfigMap"): core.ConfigMap,
    ("", "v1", "Secret"): core.Secret,
    ("discovery.k8s.io", "v1", "EndpointSlice"): core.EndpointSlice,
}
KNOWN_KINDS = {kind for (_, _, kind) in MODELS}


class InvalidResource(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def parse_object(doc: Any, *, origin: str = "-", doc_index: int = 0) -> Resource | None:
    """Return the model for `doc`, None for kinds this project does not read; raise InvalidResource."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise InvalidResource([Problem(origin, doc_index, "", "", "", "", "document is not a mapping")])
    kind, namespace, name = _identity(doc)

    def problem(field: str, message: str) -> Problem:
        return Problem(origin, doc_index, kind, namespace, name, field, message)

    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not kind:
        raise InvalidResource([problem("apiVersion" if not isinstance(api_version, str) else "kind",
                                       "apiVersion and kind are required")])
    group, _, version = api_version.rpartition("/")
    model = MODELS.get((group, version, kind))
    if model is None:
        if kind in KNOWN_KINDS and any(g == group and k == kind for g, _, k in MODELS):
            raise InvalidResource([problem("apiVersion", f"version {api_version!r} of {kind} is not served")])
        return None
    try:
        obj = model.model_validate(doc)
        if isinstance(obj, agentic.XAccessPolicyV0):
            obj = obj.to_v1alpha1()
    except ValidationError as err:
        raise InvalidResource([problem(_field_path(e["loc"]), _message(e)) for e in err.errors()]) from None
    except ValueError as err:
        raise InvalidResource([problem("spec", str(err))]) from None
    except RecursionError:
        raise InvalidResource([problem("-", "nested too deep to validate")]) from None
    except Exception as err:  # noqa: BLE001 - a validator's bug or an exhausted resource: still this document's problem
        raise InvalidResource([problem("-", f"cannot validate: {type(err).__name__}: {err}")]) from None
    return obj


def _identity(doc: dict) -> tuple[str, str, str]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else ""
    return kind, str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "literal[")):
            path += f".{part}" if path else part
    return path or "-"


def _message(error: dict) -> str:
    msg = error["msg"]
    return msg.removeprefix("Value error, ")
