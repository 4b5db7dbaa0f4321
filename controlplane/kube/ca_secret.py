"""The mesh CA kept in a Kubernetes Secret, so that every control-plane replica issues from the same root.

Why: each replica serves xDS, and a proxy may reconnect to any of them. With one CA per replica (each
in its own emptyDir), a proxy's certificate from one replica fails against another. The Secret
(default `agentic-cp-ca` in the control plane's namespace; keys `ca.pem`, `ca-key.pem`,
`trust-domain`, the same names as the state dir's files) holds the one root.

Who creates it: whoever comes first. Creation is a POST, and the apiserver answers 409 to every
replica but one, so the losers read the winner's Secret and use that. This is the apiserver's own
optimistic concurrency, as the Lease uses it, not a consensus of our own; no leadership is needed
just to create an object that is never updated afterwards. The Secret is never rewritten: deleting
it is how an operator rotates the root (and every proxy must then get new credentials).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from controlplane.identity.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    TRUST_DOMAIN_FILE,
    CaStateError,
    CertificateAuthority,
    TrustDomainMismatch,
)
from controlplane.kube.client import ApiError, KubeApi, is_transient
from controlplane.kube.kinds import Kind

__all__ = ["DEFAULT_CA_SECRET", "SECRET", "ca_secret", "load_or_create_from_secret"]

log = logging.getLogger(__name__)

DEFAULT_CA_SECRET = "agentic-cp-ca"
SECRET = Kind("Secret", "", "v1", "secrets", True)
_ATTEMPTS = 3  # create lost to another replica, whose Secret then vanished: try again, a little


def ca_secret(ca: CertificateAuthority, *, namespace: str, name: str) -> dict[str, Any]:
    """The Secret object that stores ``ca``."""
    data = {
        CA_CERT_FILE: ca.bundle_pem,
        CA_KEY_FILE: ca.key_pem(),
        TRUST_DOMAIN_FILE: (ca.trust_domain + "\n").encode(),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "agentic-cp", "app.kubernetes.io/component": "ca"},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


async def load_or_create_from_secret(
    api: KubeApi,
    *,
    namespace: str,
    name: str = DEFAULT_CA_SECRET,
    trust_domain: str,
    create_if_missing: bool = True,
) -> CertificateAuthority:
    """The CA in Secret ``namespace/name``; created first (with a new root) if there is none.

    Raises TrustDomainMismatch if the Secret holds a CA for another trust domain, CaStateError if it is
    incomplete or unreadable, if it is missing and ``create_if_missing`` is false, or if the apiserver
    refuses (e.g. RBAC). Nothing is retried here but a lost creation race; what can pass (connection
    errors, 429, 5xx) is raised as it is, for the caller's start-up retry (kube/startup.py).
    """
    where = f"Secret {namespace}/{name}"
    for _ in range(_ATTEMPTS):
        secret = await _get(api, namespace, name, where)
        if secret is not None:
            return _load(secret, where=where, trust_domain=trust_domain)
        if not create_if_missing:
            raise CaStateError(f"{where} holding the CA does not exist")
        ca = CertificateAuthority.create(trust_domain=trust_domain)
        try:
            body = ca_secret(ca, namespace=namespace, name=name)
            await api.call(lambda k: k.core.create_namespaced_secret, namespace, body)
        except ApiError as error:
            if error.status == 409:  # another replica created it first: use theirs
                log.info("%s was created by another replica; loading it", where)
                continue
            if is_transient(error):  # the caller's start-up retry waits for it
                raise
            raise CaStateError(f"cannot create {where}: {error}") from error
        log.info("created a new root CA for trust domain %s in %s", trust_domain, where)
        return ca
    raise CaStateError(f"{where} keeps being created and deleted; gave up after {_ATTEMPTS} attempts")


async def _get(api: KubeApi, namespace: str, name: str, where: str) -> dict[str, Any] | None:
    try:
        return await api.call(lambda k: k.core.read_namespaced_secret, name, namespace)
    except ApiError as error:
        if error.status == 404:
            return None
        if is_transient(error):
            raise
        raise CaStateError(f"cannot read {where}: {error}") from error


def _load(secret: dict[str, Any], *, where: str, trust_domain: str) -> CertificateAuthority:
    data = secret.get("data") or {}
    try:
        values = {key: base64.b64decode(data[key], validate=True)
                  for key in (CA_CERT_FILE, CA_KEY_FILE, TRUST_DOMAIN_FILE)}
    except KeyError as missing:
        raise CaStateError(f"{where} has no key {missing}") from None
    except ValueError as error:
        raise CaStateError(f"{where} is not valid base64: {error}") from None
    stored = values[TRUST_DOMAIN_FILE].decode(errors="replace").strip()
    if stored != trust_domain:
        raise TrustDomainMismatch(
            f"{where} holds a CA for trust domain {stored!r}, not {trust_domain!r}; "
            f"use --trust-domain {stored}, or another --ca-secret"
        )
    return CertificateAuthority.from_pem(trust_domain=trust_domain, cert_pem=values[CA_CERT_FILE],
                                         key_pem=values[CA_KEY_FILE], origin=where)
