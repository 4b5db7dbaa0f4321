"""Egress settings in this project's own group (`governance.agentic-cp.dev`), never in upstream's kinds.

What names an egress proxy: a Gateway of our GatewayClass labelled `governance.agentic-cp.dev/egress:
"true"`. Why a Gateway (as Istio's egress gateway and WG AI Gateway's egress proposal both do) rather than
one implicit proxy per namespace: it is provisioned, addressed and given status like any Gateway, its
HTTPS listener is where sidecars reach it, and Gateway-level XAccessPolicies attach to it unchanged. An
egress Gateway serves the `hostname` XBackends of its own namespace: the namespace that declares an
external provider runs (and owns) the proxy that reaches it.

Per XBackend, two optional annotations (upstream's XBackend has no field for either):
- `governance.agentic-cp.dev/egress-ca: ConfigMap/NAME` or `Secret/NAME`: the CA bundle (key `ca.crt`, in
  the XBackend's namespace) the provider's certificate must chain to; without it, the system bundle.
- `governance.agentic-cp.dev/egress-credential: NAME[/KEY]`: a Secret (key `credential` by default) whose
  value the egress injects into `governance.agentic-cp.dev/egress-credential-header` (default
  `Authorization`), so agents never hold the provider's key.

The parsing here is pure; a malformed value raises `ValueError` with one line (never a value of a Secret).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.api.governance import GOVERNANCE_GROUP

EGRESS_LABEL = f"{GOVERNANCE_GROUP}/egress"
CA_ANNOTATION = f"{GOVERNANCE_GROUP}/egress-ca"
CREDENTIAL_ANNOTATION = f"{GOVERNANCE_GROUP}/egress-credential"
CREDENTIAL_HEADER_ANNOTATION = f"{GOVERNANCE_GROUP}/egress-credential-header"
CA_KEY, CREDENTIAL_KEY, CREDENTIAL_HEADER = "ca.crt", "credential", "Authorization"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain, as Kubernetes names are
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # a ConfigMap/Secret data key
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP token (RFC 9110)
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})


@dataclass(frozen=True)
class ObjectKeyRef:
    """One key of a ConfigMap or Secret in the XBackend's namespace."""

    kind: str  # "ConfigMap" or "Secret"
    name: str
    key: str


@dataclass(frozen=True)
class EgressSettings:
    ca: ObjectKeyRef | None = None  # None: the system bundle
    credential: ObjectKeyRef | None = None  # a Secret key; None: nothing injected
    credential_header: str = CREDENTIAL_HEADER


def is_egress_gateway(labels: dict[str, str]) -> bool:
    return labels.get(EGRESS_LABEL) == "true"


def egress_settings(annotations: dict[str, str]) -> EgressSettings:
    """An XBackend's egress annotations; ValueError (one line, naming the annotation) when malformed."""
    ca = _ca_ref(annotations[CA_ANNOTATION]) if CA_ANNOTATION in annotations else None
    credential = _credential_ref(annotations[CREDENTIAL_ANNOTATION]) if CREDENTIAL_ANNOTATION in annotations else None
    header = annotations.get(CREDENTIAL_HEADER_ANNOTATION, CREDENTIAL_HEADER)
    if not _HEADER.match(header) or header.lower() in _RESERVED_HEADERS or header.startswith(":"):
        raise ValueError(f"{CREDENTIAL_HEADER_ANNOTATION}: {header[:64]!r} is not a header a credential may go in")
    if CREDENTIAL_HEADER_ANNOTATION in annotations and credential is None:
        raise ValueError(f"{CREDENTIAL_HEADER_ANNOTATION} is set but {CREDENTIAL_ANNOTATION} is not")
    return EgressSettings(ca, credential, header)


def _ca_ref(value: str) -> ObjectKeyRef:
    kind, sep, name = value.partition("/")
    if not sep or kind not in ("ConfigMap", "Secret") or not _NAME.match(name):
        raise ValueError(f"{CA_ANNOTATION}: want ConfigMap/NAME or Secret/NAME, not {value[:64]!r}")
    return ObjectKeyRef(kind, name, CA_KEY)


def _credential_ref(value: str) -> ObjectKeyRef:
    name, sep, key = value.partition("/")
    key = key if sep else CREDENTIAL_KEY
    if not _NAME.match(name) or not _KEY.match(key):
        raise ValueError(f"{CREDENTIAL_ANNOTATION}: want SECRET or SECRET/KEY, not {value[:64]!r}")
    return ObjectKeyRef("Secret", name, key)
