"""The HTTP admin server: health, readiness, metrics and xDS debug views.

``/readyz`` answers 200 only once the readiness callable says a first complete config
exists, so a load balancer or a rollout never sends proxies to a replica that would
hold them waiting. The debug views read the xDS server's live stream state and the
snapshot cache; config_dump parses bodies back to JSON only on demand, and redacts
private keys and other secrets before anything leaves the process.

Exposure: ``/healthz``, ``/readyz`` and ``/metrics`` are open (probes, Prometheus); ``/debug/*`` shows
every proxy's config and identity, so it answers only a bearer token (``--admin-token-file``) or, with
no token configured, only clients on loopback (``kubectl port-forward`` arrives there). Connections
that send nothing, or never finish a request, are closed after ``idle_timeout`` (aiohttp's keep-alive
timer also runs before the first request), and at most ``max_connections`` are held at once: a client
past the limit is disconnected on accept, so idle sockets cannot starve the probes.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.admin.redact import redact
from controlplane.xds.resources import message_class
from controlplane.xds.server import XdsServer

_JSON_DUMPS = functools.partial(json.dumps, indent=2, sort_keys=True)
DEBUG_PREFIX = "/debug/"
IDLE_TIMEOUT_SECONDS = 15.0
MAX_CONNECTIONS = 128


class _Refused(asyncio.Protocol):
    """What a connection past the limit gets: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:  # e.g. a Unix socket peer
        return False


class AdminServer:
    """aiohttp app with /healthz /readyz /metrics /debug/syncz /debug/config_dump.

    ``app`` is exposed so other parts of the control plane can add routes before ``start``.
    """

    def __init__(self, *, xds: XdsServer, ready: Callable[[], bool], token: str | None = None,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS) -> None:
        self.xds = xds
        self._ready = ready
        self._token = token.encode() if token else None
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._listener: asyncio.Server | None = None
        self.app = web.Application(middlewares=[self._guard_debug])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/debug/syncz", self.syncz)
        self.app.router.add_get("/debug/config_dump", self.config_dump)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0 picks a free port); returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self._idle_timeout,
                                     max_line_size=4096, max_field_size=8190, max_headers=64)
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None

        def accept() -> asyncio.BaseProtocol:
            return _Refused() if len(handlers.connections) >= self._max_connections else handlers()

        self._listener = await asyncio.get_running_loop().create_server(accept, host, port, reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard_debug(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith(DEBUG_PREFIX):
            if self._token is not None:
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
                    raise web.HTTPUnauthorized(text="a bearer token is required\n",
                                               headers={"WWW-Authenticate": "Bearer"})
            elif not _is_loopback(request.remote):
                raise web.HTTPForbidden(text="debug views answer loopback clients only (no --admin-token-file)\n")
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="no complete configuration yet\n")

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.xds.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def syncz(self, request: web.Request) -> web.Response:
        """Per connected proxy and type: versions sent and ACKed, status, NACK error (Istio syncz).

        Delta streams (``"variant": "delta"``) also list per-resource versions: ``resources_sent``
        (what the client holds as far as the server knows), ``resources_acked`` and
        ``resources_rejected`` (NACKed and parked until the resource changes).
        """
        proxies = []
        for conn in self.xds.connections():
            proxies.append(
                {
                    "proxy": conn.node_id,
                    "variant": conn.variant,
                    "node_key": conn.node_key,
                    "stream_id": conn.stream_id,
                    "peer": conn.peer,
                    "identity": conn.peer_identity,
                    "connected_since": conn.connected_since,
                    "types": [
                        {
                            "type_url": t.type_url,
                            "status": t.status,
                            "version_sent": t.version_sent,
                            "version_acked": t.version_acked,
                            "nonce_sent": t.nonce_sent,
                            "wildcard": t.wildcard,
                            "subscribed": list(t.subscribed),
                            "error": t.last_nack_error if t.status == "ERROR" else None,
                            "last_nack_error": t.last_nack_error,
                            **(_delta_resources(t) if conn.variant == "delta" else {}),
                        }
                        for t in conn.types
                    ],
                }
            )
        return web.json_response({"proxies": proxies}, dumps=_JSON_DUMPS)

    async def config_dump(self, request: web.Request) -> web.Response:
        """The snapshot a proxy gets, as JSON; ``proxy`` is a connected node id or a node key."""
        proxy = request.query.get("proxy", "")
        node_key = self._node_key(proxy)
        snapshot = self.xds.cache.get(node_key) if node_key is not None else None
        if snapshot is None:
            raise web.HTTPNotFound(text=f"unknown proxy {proxy!r}\n")
        configs = []
        for type_url in snapshot.type_urls:
            resources = snapshot.resources(type_url)
            configs.append(
                {
                    "type_url": type_url,
                    "version_info": snapshot.version(type_url),
                    "resources": [_dump_resource(resources[name]) for name in sorted(resources)],
                }
            )
        return web.json_response(
            {"proxy": proxy, "node_key": node_key, "configs": configs}, dumps=_JSON_DUMPS
        )

    def _node_key(self, proxy: str) -> str | None:
        for conn in self.xds.connections():
            if conn.node_id == proxy:
                return conn.node_key
        return proxy if self.xds.cache.is_ready(proxy) else None


def _delta_resources(t: Any) -> dict[str, Any]:
    return {
        "resources_sent": dict(t.resources_sent),
        "resources_acked": dict(t.resources_acked),
        "resources_rejected": dict(t.resources_rejected),
    }


def _dump_resource(resource: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": resource.name, "version": resource.version}
    try:
        entry["resource"] = redact(_to_dict(resource.type_url, resource.body))
    except (TypeError, ValueError, KeyError, IndexError) as exc:  # one bad body must not fail the view
        entry["error"] = f"cannot decode: {exc}"
    return entry


def _to_dict(type_url: str, body: bytes, attempts: int = 32) -> dict[str, Any]:
    """Parse a body back and render it; nested ``Any`` types are imported on first sight."""
    message = message_class(type_url).parse(body)
    for _ in range(attempts):
        try:
            return message.to_dict()
        except TypeError as exc:
            missing = str(exc).rpartition("unregistered type: ")[2]
            if not missing or missing == str(exc):
                raise
            message_class(missing)  # imports the module that registers it, or raises
    raise TypeError(f"too many nested unregistered types in {type_url}")
