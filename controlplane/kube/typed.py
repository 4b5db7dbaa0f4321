"""Which official typed call serves a kind: `CoreV1Api.list_service_for_all_namespaces`, and so on.

Why: the watch loop and the provisioner treat many kinds alike, and the official client names its
calls by a fixed scheme (`<verb>_namespaced_<kind>`, `<verb>_<kind>_for_all_namespaces`, one API class
per group and version). Kinds of any other group (our CRDs, Gateway API) go through `CustomObjectsApi`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from controlplane.kube.client import Apis
from controlplane.kube.kinds import Kind

Call = Callable[..., Awaitable[Any]]

# API group -> the attribute of `Apis` holding its typed API (version v1 for all of them).
TYPED_GROUPS = {"": "core", "apps": "apps", "discovery.k8s.io": "discovery", "coordination.k8s.io": "coordination",
                "admissionregistration.k8s.io": "admission"}


def snake_case(kind_name: str) -> str:
    """`EndpointSlice` -> `endpoint_slice`, as the generated method names spell kinds."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind_name).lower()


def is_typed(kind: Kind) -> bool:
    return kind.group in TYPED_GROUPS and kind.version == "v1"


def list_call(apis: Apis, *, kind: Kind) -> Call:
    """The call listing (and, with `watch=True`, watching) a kind across all namespaces."""
    if not is_typed(kind):
        return functools.partial(apis.custom.list_cluster_custom_object, kind.group, kind.version, kind.plural)
    api = getattr(apis, TYPED_GROUPS[kind.group])
    suffix = "_for_all_namespaces" if kind.namespaced else ""
    return getattr(api, f"list_{snake_case(kind.kind)}{suffix}")


def namespaced_call(apis: Apis, *, kind: Kind, verb: str) -> Call:
    """`read`, `patch`, `delete`... of one object of a built-in namespaced kind: `(name, namespace, ...)`."""
    if not (is_typed(kind) and kind.namespaced):
        raise ValueError(f"{kind.kind} is not a built-in namespaced kind")
    return getattr(getattr(apis, TYPED_GROUPS[kind.group]), f"{verb}_namespaced_{snake_case(kind.kind)}")


def cluster_call(apis: Apis, *, kind: Kind, verb: str) -> Call:
    """`read`, `patch`... of one object of a built-in cluster-scoped kind: `(name, ...)`."""
    if not is_typed(kind) or kind.namespaced:
        raise ValueError(f"{kind.kind} is not a built-in cluster-scoped kind")
    return getattr(getattr(apis, TYPED_GROUPS[kind.group]), f"{verb}_{snake_case(kind.kind)}")
