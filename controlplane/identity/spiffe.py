"""SPIFFE IDs: the only name an identity has in this mesh.

Envoy RBAC matches ``authenticated.principal_name`` against the URI SAN of the peer certificate, so the ID
string we build here must be byte-for-byte the one a policy names. The Kubernetes convention
``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`` is the one upstream kube-agentic-networking,
Istio and kgateway use; sticking to it keeps upstream manifests meaningful unchanged.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_SPIFFE_ID_LENGTH",
    "MAX_TRUST_DOMAIN_LENGTH",
    "SPIFFE_ID_PATTERN",
    "InvalidSpiffeId",
    "parse_spiffe_id",
    "spiffe_id",
    "trust_domain_id",
    "validate_trust_domain",
    "validate_workload_id",
    "workload_of",
]

SPIFFE_ID_PATTERN = re.compile(r"^spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_SCHEME = "spiffe://"
# SPIFFE ID spec, section 2: a trust domain is at most 255 bytes, a whole ID at most 2048.
MAX_TRUST_DOMAIN_LENGTH = 255
MAX_SPIFFE_ID_LENGTH = 2048


class InvalidSpiffeId(ValueError):
    """A string that is not a SPIFFE ID we can put into a certificate or a policy."""


def validate_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` unchanged, or raise: it becomes part of every ID and of the CA's own SAN."""
    if not _TRUST_DOMAIN.match(trust_domain or ""):
        raise InvalidSpiffeId(f"invalid trust domain {trust_domain!r}: want lowercase [a-z0-9._-]+")
    if len(trust_domain) > MAX_TRUST_DOMAIN_LENGTH:
        raise InvalidSpiffeId(f"trust domain is {len(trust_domain)} characters long; at most "
                              f"{MAX_TRUST_DOMAIN_LENGTH} are allowed")
    return trust_domain


def _check_segment(kind: str, value: str) -> str:
    if not _SEGMENT.match(value or "") or value in (".", ".."):
        raise InvalidSpiffeId(f"invalid {kind} {value!r} for a SPIFFE ID path segment")
    return value


def spiffe_id(trust_domain: str, namespace: str, service_account: str, *, validate: bool = True) -> str:
    """The SPIFFE ID of a Kubernetes workload: ``spiffe://<td>/ns/<ns>/sa/<sa>``.

    Validated (InvalidSpiffeId) for anything that goes into a certificate. ``validate=False`` is for
    names a policy gives, which the API does not check against SPIFFE's rules: a policy naming an ID no
    certificate can carry must match nobody rather than fail the whole graph, so the string is built as is.
    """
    if validate:
        validate_trust_domain(trust_domain)
        _check_segment("namespace", namespace)
        _check_segment("service account", service_account)
    return f"{_SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"


def trust_domain_id(trust_domain: str) -> str:
    """The ID of the trust domain itself (``spiffe://<td>``), carried by the root CA as its URI SAN."""
    return _SCHEME + validate_trust_domain(trust_domain)


def parse_spiffe_id(value: str) -> tuple[str, str]:
    """Split a SPIFFE ID into ``(trust_domain, path)``; the path is ``""`` or starts with ``/``.

    Raises InvalidSpiffeId for anything Envoy or a peer could interpret differently: upper-case trust
    domains, empty or dot segments, query strings, percent escapes, trailing slashes.
    """
    if isinstance(value, str) and len(value) > MAX_SPIFFE_ID_LENGTH:
        raise InvalidSpiffeId(f"SPIFFE ID is {len(value)} characters long; at most {MAX_SPIFFE_ID_LENGTH} "
                              f"are allowed")
    if not isinstance(value, str) or not SPIFFE_ID_PATTERN.match(value):
        raise InvalidSpiffeId(f"invalid SPIFFE ID {value!r}")
    rest = value[len(_SCHEME):]
    trust_domain, slash, path = rest.partition("/")
    validate_trust_domain(trust_domain)
    path = slash + path
    if any(seg in (".", "..") for seg in path.split("/")[1:]):
        raise InvalidSpiffeId(f"invalid SPIFFE ID {value!r}: '.' and '..' segments are not allowed")
    return trust_domain, path


def validate_workload_id(value: str) -> str:
    """Return ``value`` if it can name a workload: a valid SPIFFE ID with a non-empty path.

    ``spiffe://<td>`` alone names the trust domain (the root CA carries it); a certificate issued for
    it would be an identity every policy on the trust domain itself matches.
    """
    _, path = parse_spiffe_id(value)
    if not path:
        raise InvalidSpiffeId(f"SPIFFE ID {value!r} has no path: a workload ID looks like "
                              f"spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")
    return value


def workload_of(value: str) -> tuple[str, str] | None:
    """``(namespace, service_account)`` for a Kubernetes-style ID, else None (also for invalid IDs)."""
    try:
        _, path = parse_spiffe_id(value)
    except InvalidSpiffeId:
        return None
    parts = path.split("/")[1:]
    if len(parts) == 4 and parts[0] == "ns" and parts[2] == "sa":
        return parts[1], parts[3]
    return None
