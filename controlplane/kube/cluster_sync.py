"""What flows back to a Kubernetes cluster: object statuses and each Gateway's Envoy infrastructure.

Every replica serves xDS; only the replica holding the Lease writes (the StatusWriter and the
provisioner both defer to the elector). A sync runs after each publish, debounced, and computes the
whole desired state from the graph, so a missed or failed write is repaired by the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from controlplane.api.base import ResourceKey
from controlplane.api.gateway import OUR_CONTROLLER
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.status import all_statuses, managed_gateways
from controlplane.kube.client import KubeApi
from controlplane.kube.leader import LeaderElector
from controlplane.kube.provisioner import GatewayProvisioner
from controlplane.kube.status_writer import StatusWriter

log = logging.getLogger(__name__)
DEBOUNCE_SECONDS = 0.1


class ClusterSync:
    def __init__(self, *, api: KubeApi, graph: AuthorizationGraph, published: Callable[[], Collection[ResourceKey]],
                 namespace: str, identity: str, provisioner: GatewayProvisioner | None = None,
                 elector: LeaderElector | None = None, controller_name: str = OUR_CONTROLLER):
        self.graph = graph
        self.published = published
        self.elector = elector or LeaderElector(api=api, namespace=namespace, identity=identity)
        self.writer = StatusWriter(api=api, elector=self.elector)
        self.provisioner = provisioner
        self.controller_name = controller_name
        self._dirty = asyncio.Event()
        self.syncs = 0

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        self.elector.start()
        self.elector.subscribe(lambda leading: self.mark_dirty() if leading else None)
        try:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(DEBOUNCE_SECONDS)
                self._dirty.clear()
                try:
                    await self.sync_once()
                except Exception:  # the next change or leadership change retries the whole state
                    log.exception("writing statuses and gateway infrastructure failed")
        finally:
            await self.writer.aclose()
            await self.elector.stop()

    async def sync_once(self) -> None:
        addresses = {}
        if self.provisioner is not None:
            infrastructure = await self.provisioner.reconcile(managed_gateways(self.graph))
            addresses = {key: info.addresses for key, info in infrastructure.items()}
        statuses = all_statuses(self.graph, controller_name=self.controller_name, addresses=addresses,
                                programmed=set(self.published()))
        for (kind, namespace, name), status in sorted(statuses.items()):
            await self.writer.write(kind, namespace, name, status)
        self.syncs += 1
