"""The injection webhook over HTTPS: `POST /inject`, TLS from the control plane's CA.

Why the mesh CA: the MutatingWebhookConfiguration's caBundle must hold the root that signed this
server's certificate, and the control plane keeps that bundle current (`kube/webhook_ca.py`), so no
cert-manager is needed. The certificate names the webhook Service's DNS names (the apiserver checks
them) and is reissued at half its lifetime into the same TLS context (`renew_forever`): new handshakes
get the new one.

Bounded: bodies over `MAX_BODY` are refused by aiohttp (413); a body that is not a review gets 400
with one line; nothing a client sends can raise out of the handler.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from controlplane.identity.ca import CertificateAuthority
from controlplane.logs import clip
from controlplane.translate.injection import MeshSettings
from controlplane.webhook.review import ReviewError, answer, parse

log = logging.getLogger(__name__)
MAX_BODY = 4 * 1024 * 1024
CERT_TTL = timedelta(hours=24)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the apiserver may dial the webhook Service by."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}"]


def load_certificate(context: ssl.SSLContext, ca: CertificateAuthority, *, spiffe_id: str,
                     dns_names: list[str], ttl: timedelta = CERT_TTL) -> None:
    """A fresh certificate for `dns_names` into `context` (ssl loads keys from files only, so the key goes
    through a private temporary directory, removed at once)."""
    identity = ca.issue(spiffe_id, dns_names=dns_names, ttl=ttl)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(identity.chain_pem)
        key.write_bytes(identity.key_pem)
        context.load_cert_chain(cert, key)


def tls_context(ca: CertificateAuthority, *, spiffe_id: str, dns_names: list[str],
                ttl: timedelta = CERT_TTL) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding a certificate from `ca` for `dns_names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_certificate(context, ca, spiffe_id=spiffe_id, dns_names=dns_names, ttl=ttl)
    return context


async def renew_forever(context: ssl.SSLContext, ca: CertificateAuthority, *, spiffe_id: str,
                        dns_names: list[str], ttl: timedelta = CERT_TTL) -> None:
    """Reissue the certificate at half its lifetime, until cancelled."""
    while True:
        await asyncio.sleep(ttl.total_seconds() / 2)
        load_certificate(context, ca, spiffe_id=spiffe_id, dns_names=dns_names, ttl=ttl)


def make_app(mesh: MeshSettings) -> web.Application:
    async def inject(request: web.Request) -> web.Response:
        try:
            review_request = parse(await request.read())
        except ReviewError as err:
            log.warning("injection webhook: refused a request: %s", clip(err))
            return web.Response(status=400, text=f"{err}\n")
        try:
            return web.json_response(answer(review_request, mesh))
        except Exception:  # a bug must answer the apiserver, which then applies failurePolicy
            log.exception("injection webhook: could not answer")
            return web.Response(status=500, text="internal error\n")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/inject", inject)
    return app


class WebhookServer:
    """`/inject` on `host:port` over TLS; `start()` and `stop()` inside one event loop."""

    def __init__(self, *, mesh: MeshSettings, context: ssl.SSLContext, host: str, port: int):
        self._runner = web.AppRunner(make_app(mesh), access_log=None)
        self._context, self._host, self._port = context, host, port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._context)
        await site.start()
        log.info("injection webhook on https://%s:%d/inject", self._host, self._port)

    async def stop(self) -> None:
        await self._runner.cleanup()

