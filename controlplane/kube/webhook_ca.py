"""Keeps the injection MutatingWebhookConfiguration's caBundle equal to the mesh CA's bundle.

Why the control plane does it: the webhook's certificate comes from the mesh CA (`webhook/server.py`),
so only the control plane knows the bundle; the chart renders the configuration with an empty caBundle
(and `helm upgrade` empties it again), and until it is set the apiserver cannot call the webhook (its
failurePolicy then decides). Every replica may write it: they share one CA (the CA Secret), so their
writes agree, and a write that changes nothing is skipped.

How: read the configuration, set `clientConfig.caBundle` on each of its webhooks, and merge-patch the
`webhooks` list back with the resourceVersion read (a JSON merge patch replaces a list whole, so the
resourceVersion makes a concurrent edit a 409, retried next round, instead of lost).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import logging
from typing import Any

from controlplane.kube.client import TRANSIENT_ERRORS, ApiError, KubeApi
from controlplane.kube.kinds import Kind
from controlplane.kube.typed import cluster_call
from controlplane.logs import clip

log = logging.getLogger(__name__)

MUTATING_WEBHOOK_CONFIGURATION = Kind("MutatingWebhookConfiguration", "admissionregistration.k8s.io", "v1",
                                      "mutatingwebhookconfigurations", False)
MERGE_PATCH = "application/merge-patch+json"
RESYNC_SECONDS = 60.0


def with_ca_bundle(config: dict[str, Any], bundle_pem: bytes) -> list[dict] | None:
    """The configuration's webhooks with `bundle_pem` as every caBundle, or None when they hold it already."""
    wanted = base64.b64encode(bundle_pem).decode()
    webhooks = copy.deepcopy(config.get("webhooks") or [])
    if not isinstance(webhooks, list) or not all(isinstance(w, dict) for w in webhooks):
        raise ValueError("webhooks: not a list of webhooks")
    changed = False
    for webhook in webhooks:
        client_config = webhook.setdefault("clientConfig", {})
        if client_config.get("caBundle") != wanted:
            client_config["caBundle"] = wanted
            changed = True
    return webhooks if changed else None


async def sync_ca_bundle(api: KubeApi, *, name: str, bundle_pem: bytes) -> bool:
    """One round: True when it wrote. A missing configuration (webhook off in the chart) is not an error."""
    read = functools.partial(cluster_call, kind=MUTATING_WEBHOOK_CONFIGURATION, verb="read")
    patch = functools.partial(cluster_call, kind=MUTATING_WEBHOOK_CONFIGURATION, verb="patch")
    try:
        config = await api.call(read, name)
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    webhooks = with_ca_bundle(config, bundle_pem)
    if webhooks is None:
        return False
    body = {"metadata": {"resourceVersion": config["metadata"]["resourceVersion"]}, "webhooks": webhooks}
    await api.call(patch, name, body, _content_type=MERGE_PATCH)
    log.info("set the caBundle of MutatingWebhookConfiguration %s", clip(name))
    return True


async def keep_ca_bundle(api: KubeApi, *, name: str, bundle_pem: bytes, every: float = RESYNC_SECONDS) -> None:
    """`sync_ca_bundle` now and every `every` seconds (a `helm upgrade` empties it), until cancelled."""
    while True:
        try:
            await sync_ca_bundle(api, name=name, bundle_pem=bundle_pem)
        except (ApiError, KeyError, TypeError, *TRANSIENT_ERRORS) as error:  # ValueError is among them
            log.warning("could not set the caBundle of MutatingWebhookConfiguration %s: %s", clip(name), clip(error))
        await asyncio.sleep(every)
