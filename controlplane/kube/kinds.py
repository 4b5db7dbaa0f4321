"""The table of Kubernetes kinds this project watches, and where each lives in the API.

Why a table: the Kubernetes source treats every kind the same way (list, watch, diff), so all it needs
is the coordinates of each one; `kube.typed` turns them into the official client's call. Versions are the
ones upstream kube-agentic-networking's controller reads (XAccessPolicy v1alpha1, XBackend v0alpha0,
ReferenceGrant v1beta1); this project's own kinds (RateLimitPolicy, GuardrailPolicy) are v1alpha1.
"""

from __future__ import annotations

from dataclasses import dataclass

# API groups served by kube-apiserver itself; any other group is a CRD that may not be installed.
BUILTIN_GROUPS = frozenset({"", "discovery.k8s.io", "coordination.k8s.io"})


@dataclass(frozen=True)
class Kind:
    """API coordinates of one kind: `/api[s]/<group>/<version>/[namespaces/<ns>/]<plural>` on the wire."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """The name RBAC rules and error messages use: `plural.group` (just `plural` for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_crd(self) -> bool:
        return self.group not in BUILTIN_GROUPS


XACCESSPOLICY = Kind("XAccessPolicy", "agentic.networking.x-k8s.io", "v1alpha1", "xaccesspolicies", True)
XBACKEND = Kind("XBackend", "agentic.networking.x-k8s.io", "v0alpha0", "xbackends", True)
RATELIMITPOLICY = Kind("RateLimitPolicy", "governance.agentic-cp.dev", "v1alpha1", "ratelimitpolicies", True)
GUARDRAILPOLICY = Kind("GuardrailPolicy", "governance.agentic-cp.dev", "v1alpha1", "guardrailpolicies", True)
GATEWAYCLASS = Kind("GatewayClass", "gateway.networking.k8s.io", "v1", "gatewayclasses", False)
GATEWAY = Kind("Gateway", "gateway.networking.k8s.io", "v1", "gateways", True)
HTTPROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes", True)
REFERENCEGRANT = Kind("ReferenceGrant", "gateway.networking.k8s.io", "v1beta1", "referencegrants", True)
NAMESPACE = Kind("Namespace", "", "v1", "namespaces", False)
SERVICE = Kind("Service", "", "v1", "services", True)
SERVICEACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts", True)
ENDPOINTSLICE = Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", True)

# Not watched: the Lease the replicas elect their leader with.
LEASE = Kind("Lease", "coordination.k8s.io", "v1", "leases", True)

ALL_KINDS: tuple[Kind, ...] = (
    XACCESSPOLICY,
    XBACKEND,
    RATELIMITPOLICY,
    GUARDRAILPOLICY,
    GATEWAYCLASS,
    GATEWAY,
    HTTPROUTE,
    REFERENCEGRANT,
    NAMESPACE,
    SERVICE,
    SERVICEACCOUNT,
    ENDPOINTSLICE,
)


def kind_named(name: str, *, kinds: tuple[Kind, ...] = ALL_KINDS + (LEASE,)) -> Kind:
    """The entry for a kind name (`XAccessPolicy`); KeyError names the kinds known."""
    for kind in kinds:
        if kind.kind == name:
            return kind
    raise KeyError(f"unknown kind {name!r}; known: {', '.join(k.kind for k in kinds)}")
