"""The running control plane: source -> graph -> translate -> snapshot cache -> xDS streams.

Data flows one way. A change set from the source updates the graph; when the source has delivered
its first complete state, every managed Gateway's config is built and published, and after that on
every change that touched something. Nothing is published before the first complete state, so a
starting control plane never hands Envoy a partial world. A Gateway whose translation fails keeps
its last published config, and the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane import isolation, serve_log
from controlplane.api.base import Problem, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.gateway import OUR_CONTROLLER
from controlplane.graph.dependents import DependencyIndex
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.view import (
    egress_gateways,
    egress_view,
    gateway_view,
    managed_gateways,
    sidecar_view,
    workloads,
)
from controlplane.identity import sds, xds_auth
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.logs import clip
from controlplane.sources.base import Source
from controlplane.translate.context import OtelCollector
from controlplane.translate.roles import egress, sidecar
from controlplane.translate.roles.gateway import resources_for
from controlplane.xds import resources as types
from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.limits import DEFAULT_LIMITS, StreamLimits
from controlplane.xds.resources import Resource
from controlplane.xds.serialize import SerializingCache

log = logging.getLogger(__name__)


@dataclass
class Settings:
    state_dir: Path
    trust_domain: str
    xds_address: str
    admin_address: str
    controller_names: tuple[str, ...] = (OUR_CONTROLLER,)
    certificate_ttl_hours: float = 24.0
    extra_server_hosts: tuple[str, ...] = field(default_factory=tuple)
    # Whose SPIFFE ID the xDS server presents: provisioned bootstraps pin the control plane's own
    # namespace and ServiceAccount, so in a cluster these must be the pod's.
    namespace: str = xds_auth.CONTROL_PLANE_NAMESPACE
    service_account: str = xds_auth.CONTROL_PLANE_SERVICE_ACCOUNT
    admin_token: str | None = None  # bearer token for /debug/*; None: loopback clients only
    xds_limits: StreamLimits = DEFAULT_LIMITS  # what one xDS client may open and subscribe to
    audit_log: Path | None = None  # the proxies' audit records (JSON lines); None: STATE_DIR/audit.jsonl
    audit_log_max_bytes: int = 64 * 1024 * 1024  # rotated past this
    egress_ca_file: str = egress.DEBIAN_CA_BUNDLE  # the system bundle egress proxies validate providers with
    otel_collector: OtelCollector | None = None  # --otel-collector: enforcing proxies' spans and logs; None: off


WORKLOAD_KINDS = frozenset({"ServiceAccount", "Pod"})  # no graph fragment of their own, yet they make workloads
EGRESS_INPUTS = frozenset({"ConfigMap", "Secret"})  # no graph fragment either; an egress reads its CAs and credentials


class Publisher:
    """Builds every managed Gateway's and workload's snapshot from the graph and sets it in the cache.

    After the first publish, only the proxies the dependency index (graph/dependents.py) says a change can
    reach are built again, with those never built (or whose last build failed); the rest keep their
    snapshot and serialized bytes without their view being built."""

    def __init__(self, *, graph: AuthorizationGraph, cache: SnapshotCache, certificates: CertificateManager,
                 registry=None, egress_ca_file: str = egress.DEBIAN_CA_BUNDLE,
                 otel_collector: OtelCollector | None = None):
        self.graph = graph
        self.egress_ca_file = egress_ca_file
        self.otel_collector = otel_collector  # fixed for the process: a listener setting, never a policy one
        self.cache = cache
        self.certificates = certificates
        self.serializer = SerializingCache()
        self.published: dict[str, ResourceKey] = {}
        self.ready = False
        self.skipped = 0  # proxies publishes left alone because nothing they are built from changed
        self.views_built = 0  # views the last publish built (gateways and sidecars)
        self.index = DependencyIndex()
        self._reads: dict[str, set[ResourceKey]] = {}  # per proxy: what its last translation read
        self._recent: dict[str, set[ResourceKey]] = {}  # per proxy: what changed in its last rebuild
        self._cache_keys: dict[str, set[str]] = {}
        self._failed: set[str] = set()  # proxies whose last build failed: built again at every publish
        registry = registry if registry is not None else CollectorRegistry()
        self._build_seconds = Histogram("agentic_translate_seconds", "Time to build and serialize all snapshots",
                                        registry=registry)
        self._failures = Counter("agentic_translate_failures_total", "Gateways whose translation failed",
                                 registry=registry)
        self._gateways = Gauge("agentic_gateways", "Managed Gateways with a published config", registry=registry)

    def publish(self, changed: set[ResourceKey] | None = None) -> None:
        """Rebuild the proxies a change in `changed` (recomputed graph fragments, touched ServiceAccounts
        and Pods) can reach; all when None."""
        started = time.perf_counter()
        self.serializer.begin()
        self.views_built = 0
        if changed is None:
            affected = None
            self.index.remember_all(self.graph)
        else:
            affected = self.index.affected(self.graph, changed)
        wanted: dict[str, ResourceKey] = {}
        for key in managed_gateways(self.graph):
            node_id = xds_auth.node_id_for_gateway(key.namespace, key.name)
            wanted[node_id] = key
            self._publish_one(node_id, key, changed, affected, self._build_gateway)
        for key in workloads(self.graph):
            node_id = xds_auth.node_id_for_workload(key.namespace, key.name)
            wanted[node_id] = key
            self._publish_one(node_id, key, changed, affected, self._build_sidecar)
        self._publish_egress(wanted)
        self.serializer.end()
        for node_id in set(self.published) - set(wanted):
            self.cache.remove(node_id)
            self.index.forget(self.published[node_id])
            for state in (self._reads, self._recent, self._cache_keys):
                state.pop(node_id, None)
            self._failed.discard(node_id)
        self.published = wanted
        self.ready = True
        self._gateways.set(sum(1 for key in wanted.values() if key.kind == "Gateway"))
        self._build_seconds.observe(time.perf_counter() - started)

    def _publish_one(self, node_id: str, key: ResourceKey, changed: set[ResourceKey] | None,
                     affected: set[ResourceKey] | None, build: Callable) -> None:
        """Keep the proxy's snapshot when the index says the change cannot reach it; else build it.
        A bug in one proxy's translation must not stop the others: it keeps its last config."""
        if affected is not None and self._current(node_id, key) and key not in affected:
            self.serializer.keep(self._cache_keys[node_id])
            self.skipped += 1
            return
        try:
            self.views_built += 1
            reads, built, self._cache_keys[node_id] = build(key)
        except Exception:
            log.exception("translation of %s failed; it keeps its last config", key)
            self._failures.inc()
            self._failed.add(node_id)
            if node_id in self._cache_keys and self.cache.get(node_id) is not None:
                self.serializer.keep(self._cache_keys[node_id])
            return
        self._failed.discard(node_id)
        self.index.record(key, reads)
        self._reads[node_id] = reads
        self._recent[node_id] = reads if changed is None else reads & changed
        snapshot = Snapshot(built)
        if self.cache.get(node_id) != snapshot:
            self.cache.set_snapshot(node_id, snapshot)

    def _current(self, node_id: str, key: ResourceKey) -> bool:
        """Built before, successfully, and still in the cache: a snapshot the index may vouch for."""
        return (node_id not in self._failed and node_id in self._cache_keys and self.index.known(key)
                and self.cache.get(node_id) is not None)

    def _build_gateway(self, key: ResourceKey):
        view = gateway_view(self.graph, key)
        built, cache_keys = self.serializer.get_tracked(resources_for(view, secrets=self._secrets(key),
                                                                       otel_collector=self.otel_collector))
        return set(view.reads), built, cache_keys

    def _build_sidecar(self, key: ResourceKey):
        """A workload's sidecar, under ``sidecar~NS~SA`` (served only to a proxy holding that SVID)."""
        view = sidecar_view(self.graph, key)
        built, cache_keys = self.serializer.get_tracked(
            sidecar.resources_for(view, secrets=self._workload_secrets(view.spiffe_id), otel_collector=self.otel_collector))
        return set(view.reads), built, cache_keys

    def _publish_egress(self, wanted: dict[str, ResourceKey]) -> None:
        """Every egress Gateway's proxy, under ``egress~NS~NAME``, with its injected credentials over SDS.

        Rebuilt at every publish (they are few; unchanged bytes are reused, unchanged snapshots not pushed)."""
        for key in egress_gateways(self.graph):
            node_id = xds_auth.node_id_for_egress(key.namespace, key.name)
            wanted[node_id] = key
            try:
                view = egress_view(self.graph, key)
                resources = egress.resources_for(view, secrets=self._secrets(key), system_ca=self.egress_ca_file,
                                                 otel_collector=self.otel_collector)
                if resources:
                    resources += egress.credential_secrets(view)
                built, self._cache_keys[node_id] = self.serializer.get_tracked(resources)
            except Exception:  # a bug in one egress's translation must not stop the others
                log.exception("translation of the egress %s failed; it keeps its last config", key)
                self._failures.inc()
                continue
            for backend, reason in view.refused:
                log.debug("egress %s refuses %s: %s", key, backend, reason)
            self._reads[node_id] = set(view.reads)
            snapshot = Snapshot(built)
            if self.cache.get(node_id) != snapshot:
                self.cache.set_snapshot(node_id, snapshot)

    def _workload_secrets(self, spiffe_id: str) -> list[Resource]:
        """A sidecar's SVID (served inbound, presented outbound) and the trust bundle (SDS)."""
        secrets = (sds.tls_certificate_secret(sds.WORKLOAD_CERT_SECRET, self.certificates.get(spiffe_id)),
                   sds.validation_context_secret(sds.TRUST_BUNDLE_SECRET, self.certificates.bundle_pem))
        return [Resource(types.SECRET, s.name, s.to_dict()) for s in secrets]

    def reads(self, node_id: str) -> set[ResourceKey]:
        """The objects the proxy's last published translation read (graph/view.py records them)."""
        return set(self._reads.get(node_id, ()))

    def culprits(self, node_id: str, error: str) -> set[ResourceKey]:
        """The policies in a proxy's config that `error` (its NACK) most likely comes from."""
        policies = [self.graph.get(k) for k in self._reads.get(node_id, ()) if k.kind == "XAccessPolicy"]
        return isolation.culprits(error, [p for p in policies if p is not None], self._recent.get(node_id, set()))

    def _secrets(self, gateway: ResourceKey) -> list[Resource]:
        """The gateway's server certificate and the trust bundle, for its mTLS listeners (SDS)."""
        spiffe_id = xds_auth.proxy_identity_for_gateway(self.graph.trust_domain, gateway.namespace, gateway.name)
        identity = self.certificates.get(spiffe_id)
        secrets = (sds.tls_certificate_secret(sds.SERVER_CERT_SECRET, identity),
                   sds.validation_context_secret(sds.TRUST_BUNDLE_SECRET, self.certificates.bundle_pem))
        return [Resource(types.SECRET, s.name, s.to_dict()) for s in secrets]


class ControlPlane:
    """One process: reads a source, keeps the graph, serves xDS and the admin endpoints.

    ``ca`` is the CA to issue from; without one, the CA kept in ``settings.state_dir`` (created on first
    start). Replicas pass a CA they share, e.g. from ``ca_secret.load_or_create_from_secret``.
    """

    def __init__(self, *, source: Source, settings: Settings, ca: CertificateAuthority | None = None):
        self.source = source
        self.settings = settings
        self.graph = AuthorizationGraph(trust_domain=settings.trust_domain,
                                        controller_names=settings.controller_names)
        self.cache = SnapshotCache()
        if ca is None:
            ca = CertificateAuthority.load_or_create(settings.state_dir, trust_domain=settings.trust_domain)
        elif ca.trust_domain != settings.trust_domain:
            raise ValueError(f"the CA is for trust domain {ca.trust_domain!r}, not {settings.trust_domain!r}")
        self.ca = ca
        self.certificates = CertificateManager(self.ca, ttl=_hours(settings.certificate_ttl_hours))
        self.xds = None
        self.admin = None
        self.audit = None
        self.publisher = None
        self.problems: dict[str, list[Problem]] = {}
        self.applied = asyncio.Event()
        self.after_publish: list[Callable[[], None]] = []  # e.g. a cluster's status writer
        self.background: list[Callable[[], Awaitable[None]]] = []  # run beside the source loop

    async def start(self) -> None:
        from controlplane.admin.server import AdminServer
        from controlplane.xds.metrics import XdsMetrics
        from controlplane.xds.server import XdsServer

        host, _, _ = self.settings.xds_address.rpartition(":")
        metrics = XdsMetrics()
        handlers = [self._certificate_service().handler(), self._access_log_service(metrics.registry).handler(),
                    self._tools_list_filter().handler()]
        self.xds = XdsServer(cache=self.cache, authorize=xds_auth.authorize_by_spiffe_id(self.settings.trust_domain),
                             metrics=metrics, limits=self.settings.xds_limits, extra_handlers=handlers)
        self.publisher = Publisher(graph=self.graph, cache=self.cache, certificates=self.certificates,
                                   registry=self.xds.registry, egress_ca_file=self.settings.egress_ca_file,
                                   otel_collector=self.settings.otel_collector)
        hosts = [h for h in (host, *self.settings.extra_server_hosts) if h not in ("", "0.0.0.0")]
        self.server_credentials = xds_auth.RenewingServerCredentials(self.ca, lambda: xds_auth.issue_server_identity(
            self.ca, hosts=hosts, namespace=self.settings.namespace, service_account=self.settings.service_account,
            ttl=_hours(self.settings.certificate_ttl_hours)))
        self.cache.on_nack(self._isolate)
        await self.xds.start(self.settings.xds_address, self.server_credentials.credentials)
        self.admin = AdminServer(xds=self.xds, ready=lambda: self.publisher.ready,
                                 token=self.settings.admin_token)
        admin_host, _, admin_port = self.settings.admin_address.rpartition(":")
        port = await self.admin.start(admin_host or "127.0.0.1", int(admin_port))
        log.info("admin API on http://%s:%s (/healthz /readyz /metrics /debug/syncz /debug/config_dump)",
                 admin_host or "127.0.0.1", port)

    def _certificate_service(self):
        """The identity API beside ADS: SVIDs as long-lived as the ones SDS hands sidecars, at most."""
        from controlplane.identity.certificate_service import CertificateService
        from controlplane.identity.csr import SigningPolicy

        ttl = _hours(self.settings.certificate_ttl_hours)
        return CertificateService(self.ca, SigningPolicy(default_ttl=ttl, max_ttl=ttl))

    def _access_log_service(self, registry: CollectorRegistry):
        """The audit sink beside ADS: the proxies' gRPC access logs, authorized as their ADS streams are."""
        from controlplane.audit.service import AccessLogService
        from controlplane.audit.sink import AuditMetrics, AuditSink, JsonLinesFile

        path = self.settings.audit_log or self.settings.state_dir / "audit.jsonl"
        self.audit = AuditSink(JsonLinesFile(path, max_bytes=self.settings.audit_log_max_bytes),
                               AuditMetrics(registry))
        return AccessLogService(self.audit, xds_auth.authorize_by_spiffe_id(self.settings.trust_domain))
    def _tools_list_filter(self):
        """The ext_proc service that filters tools/list per caller (features/tools_list.py), on the live graph."""
        from controlplane.toolfilter.service import ToolsListFilter

        return ToolsListFilter(graph=self.graph, trust_domain=self.settings.trust_domain)

    async def run(self) -> None:
        """Start, then apply the source's changes until cancelled."""
        await self.start()
        tasks = [asyncio.create_task(self.certificates.run(lambda ids: self._publish(), interval=30.0))]
        tasks += [asyncio.create_task(run()) for run in self.background]
        try:
            synced = False
            async for change in self.source.changes():
                synced = synced or change.synced
                self.apply(change, publish=synced)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop()

    def published_gateways(self) -> list[ResourceKey]:
        published = self.publisher.published.values() if self.publisher else ()
        return [key for key in published if key.kind == "Gateway"]  # not the sidecars' ServiceAccounts

    def _publish(self, changed: set[ResourceKey] | None = None) -> None:
        before = {node: self.cache.get(node) for node in self.cache.node_keys()}
        self.publisher.publish(changed)
        for line in serve_log.published(before, {node: self.cache.get(node) for node in self.cache.node_keys()}):
            log.info("%s", line)
        for hook in self.after_publish:
            hook()

    def _isolate(self, node_key: str, type_url: str, version: str, error: str) -> None:
        """A proxy refused a version: withhold the policies it came from and publish the rest again."""
        snapshot = self.cache.get(node_key)
        if snapshot is None or (version and version != snapshot.version(type_url)):
            return  # about a version since replaced
        keys = self.publisher.culprits(node_key, error)
        reason = f"{type_url.rpartition('.')[2]} refused by {node_key}: {clip(error)}"
        dirty = self.graph.withhold(keys, reason)
        if not dirty:
            if not keys:
                log.error("%s refused its config and no policy could be blamed; it keeps its last good "
                          "config: %s", node_key, clip(error))
            return
        log.error("withholding %s (fail closed) and publishing the rest: %s",
                  ", ".join(str(k) for k in sorted(dirty)), reason)
        asyncio.get_running_loop().call_soon(self._publish, dirty)

    def apply(self, change: ChangeSet, *, publish: bool) -> None:
        for origin, problems in change.problems.items():
            _log_problem_changes(origin, self.problems.get(origin, []), problems)
            if problems:
                self.problems[origin] = problems
            else:
                self.problems.pop(origin, None)
        summary = serve_log.loaded(change) if change.synced else serve_log.changed(change)
        if summary:
            log.info("%s", summary)
        dirty = self.graph.apply(change) | _workload_keys(change)
        if publish and (dirty or not self.publisher.ready or change.synced):
            self._publish(dirty if self.publisher.ready else None)
        self.applied.set()

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.stop()
        if self.xds is not None:
            await self.xds.stop()
        if self.audit is not None:
            self.audit.close()


def _workload_keys(change: ChangeSet) -> set[ResourceKey]:
    """The ServiceAccounts and Pods a change touched (a new one can be a new workload to publish a sidecar
    for), and the ConfigMaps and Secrets (an egress's CA or credential)."""
    keys = [obj.key for obj in change.upserts] + list(change.deletes)
    return {key for key in keys if key.kind in WORKLOAD_KINDS | EGRESS_INPUTS}


MAX_PROBLEM_LINES = 20  # per origin and change; the rest is counted (`agentic-cp validate` lists them all)


def _whole_kind(problem: Problem) -> bool:
    """A kind the cluster refused to list (kube/watch.py's Failure: a missing CRD, a missing grant), not one object."""
    return bool(problem.kind) and not problem.name and not problem.field


def _log_problem_changes(origin: str, before: list[Problem], after: list[Problem]) -> None:
    """Log a problem once when it appears and once when it clears, not again at every reload."""
    previous, current = set(before), set(after)
    appeared = [p for p in after if p not in previous]
    for verb, level, problems in (("cannot read a kind (its objects kept out)", logging.WARNING,
                                   [p for p in appeared if _whole_kind(p)]),
                                  ("invalid resource (kept out, last good version stays)", logging.WARNING,
                                   [p for p in appeared if not _whole_kind(p)]),
                                  ("problem cleared", logging.INFO, [p for p in before if p not in current])):
        for problem in problems[:MAX_PROBLEM_LINES]:
            log.log(level, "%s: %s", verb, clip(str(problem), 1000))
        if len(problems) > MAX_PROBLEM_LINES:
            log.log(level, "%s: %d more in %s", verb, len(problems) - MAX_PROBLEM_LINES, clip(origin))


def _hours(value: float):
    from datetime import timedelta

    return timedelta(hours=value)
