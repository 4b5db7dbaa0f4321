"""The identity API on the xDS port: ``agentic_cp.identity.v1.CertificateService/CreateCertificate``.

Why on the xDS server: its mTLS already proves who calls (a client certificate from our CA, such as the
bootstrap credential `agentic-cp bootstrap` writes, or a previous SVID for a renewal), so an agent that
holds its own SVID (no Envoy in front of it) or a CLI gets one the way a sidecar gets its SVID over SDS:
for the identity its connection proved, and no other (csr.py checks the CSR against it).

The message classes are generated from protos/agentic_cp/identity/v1/certificate.proto (`make protos`);
the handler is a grpc generic handler, as the ADS one in xds/server.py.

TODO(issue 11): a first SVID in Kubernetes, proven by a projected ServiceAccount token (audience ours)
checked with TokenReview instead of a client certificate. Today the only proof is the mTLS client
certificate, so a pod needs a bootstrap credential first.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.csr import CsrRefused, IdentityMismatch, SigningPolicy, checked_csr
from controlplane.identity.xds_auth import peer_spiffe_id
from controlplane.logs import clip
from controlplane.protos.agentic_cp.identity.v1 import CreateCertificateRequest, CreateCertificateResponse

__all__ = ["SERVICE", "CertificateService"]

log = logging.getLogger(__name__)

SERVICE = "agentic_cp.identity.v1.CertificateService"


class _Malformed:
    """A request whose bytes did not parse; answered INVALID_ARGUMENT instead of grpc's UNKNOWN."""

    def __init__(self, error: str) -> None:
        self.error = error


def _parse(data: bytes) -> CreateCertificateRequest | _Malformed:
    try:
        return CreateCertificateRequest.parse(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed message
        return _Malformed(f"{type(exc).__name__}: {exc}")


class CertificateService:
    """Signs CSRs for the caller's proven SPIFFE ID with ``ca``, within ``policy``."""

    def __init__(self, ca: CertificateAuthority, policy: SigningPolicy | None = None) -> None:
        self._ca = ca
        self._policy = policy or SigningPolicy()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "CreateCertificate": grpc.unary_unary_rpc_method_handler(
                self.create_certificate, request_deserializer=_parse,
                response_serializer=lambda response: bytes(response)),
        })

    async def create_certificate(self, request: Any, context: Any) -> CreateCertificateResponse:
        proven = peer_spiffe_id(context.auth_context())
        if proven is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate (mTLS SVID)")
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.error}")
        try:
            csr = checked_csr(request.csr, proven)
            ttl = self._policy.ttl(request.validity_duration)
            cert = self._ca.sign_public_key(csr.public_key(), proven, ttl=ttl)
        except IdentityMismatch as err:
            log.warning("refused a certificate to %s (%s): %s", clip(proven), context.peer(), clip(err))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        except (CsrRefused, ValueError) as err:
            log.warning("refused a csr from %s (%s): %s", clip(proven), context.peer(), clip(err))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        log.info("issued %s until %s to %s", clip(proven), cert.not_valid_after_utc, context.peer())
        leaf = cert.public_bytes(serialization.Encoding.PEM).decode()
        return CreateCertificateResponse(cert_chain=[leaf, self._ca.bundle_pem.decode()])
