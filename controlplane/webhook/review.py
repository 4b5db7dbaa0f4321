"""One AdmissionReview v1 answered: the Pod injected by `translate.injection`, as a JSONPatch.

Why this shape: the apiserver sends the Pod it is about to create and applies our patch to exactly
that object, so the patch replaces only what injection changed (each changed key of `spec` and of
`metadata`), never the whole object. Failing safe: a review that is not one (bad JSON, no `request.uid`)
gets `ReviewError` (the server answers 400; the apiserver then applies the webhook's failurePolicy);
a Pod that should be injected but cannot be is *denied* with the reason, never admitted without its
sidecar (that would be fail-open: its traffic would bypass the tool's policies).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from controlplane.translate.injection import InjectionError, MeshSettings, inject_object

API_VERSION, KIND = "admission.k8s.io/v1", "AdmissionReview"
MAX_UID = 128


class ReviewError(ValueError):
    """The body is not an AdmissionReview v1 we can answer (no uid to answer to)."""


def _pointer(*parts: str) -> str:
    """An RFC 6901 JSON pointer."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def json_patch(before: dict, after: dict) -> list[dict]:
    """Add/replace ops turning `before` into `after` for the keys injection touches (spec and metadata
    keys; injection never removes one)."""
    ops = []
    for section in ("metadata", "spec"):
        old, new = before.get(section), after.get(section) or {}
        if not isinstance(old, dict):
            ops.append({"op": "add" if section not in before else "replace", "path": _pointer(section), "value": new})
            continue
        for key, value in new.items():
            if old.get(key) != value:
                ops.append({"op": "replace" if key in old else "add", "path": _pointer(section, key), "value": value})
    return ops


def _request(review: Any) -> dict:
    if not isinstance(review, dict) or review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise ReviewError(f"not an {API_VERSION} {KIND}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("request: missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID:
        raise ReviewError("request.uid: missing or not a short string")
    return request


def parse(body: bytes) -> dict:
    """The review's `request`, or ReviewError."""
    try:
        review = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise ReviewError(f"not JSON: {str(err)[:120]}") from None
    return _request(review)


def _response(uid: str, *, allowed: bool = True, message: str = "", patch: list | None = None) -> dict:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if message:
        response["status"] = {"code": 403 if not allowed else 200, "message": message}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def _is_pod_create(request: dict) -> bool:
    kind = request.get("kind") if isinstance(request.get("kind"), dict) else {}
    return (kind.get("group", "") == "" and kind.get("kind") == "Pod" and request.get("operation") == "CREATE"
            and not request.get("subResource"))


def answer(request: dict, mesh: MeshSettings) -> dict:
    """The AdmissionReview answering `request` (from `parse`). Not a Pod CREATE: allowed unchanged."""
    uid = request["uid"]
    if not _is_pod_create(request):
        return _response(uid)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return _response(uid, allowed=False, message="injection: request.object: not a Pod")
    pod = {**pod, "kind": "Pod"}
    if isinstance(pod.get("metadata"), dict) and not pod["metadata"].get("namespace") and isinstance(request.get("namespace"), str):
        pod["metadata"] = {**pod["metadata"], "namespace": request["namespace"]}
    try:
        # The webhook configuration's selectors chose this pod (namespace label, or the pod's own label);
        # the pod's opt-out still holds.
        injected, _why = inject_object(pod, mesh, namespace_label="enabled")
    except InjectionError as err:
        return _response(uid, allowed=False, message=f"sidecar injection refused this Pod: {err}")
    if injected is pod:
        return _response(uid)
    return _response(uid, patch=json_patch(pod, injected))  # pod differs from the object only by namespace
