"""A fake kube-apiserver that speaks the real wire protocol over HTTP, for tests on a machine without one.

It holds objects in memory under one monotonically increasing resourceVersion and serves what the
control plane uses: LIST with `limit`/`continue` (consistent snapshots), WATCH as a chunked stream of
JSON lines (`timeoutSeconds`, bookmarks when asked), GET/POST/PUT/DELETE with resourceVersion
preconditions (409), and merge-patch on objects and on `/status`. Like the real one, list items of
built-in kinds carry no `kind`/`apiVersion`, errors are `Status` objects, and a watch from a
compacted resourceVersion answers 410 Gone (as an ERROR event, or as the HTTP status when
`gone_as_status` is set).

Tests drive the failures: `compact()`, `drop_watches()`, `bookmark()`, `forbid()`, `uninstall()`,
`inject()`; and read back `requests` to see what the client asked for.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from controlplane.kube.kinds import ALL_KINDS, LEASE, Kind

Ident = tuple[str, str]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str = ""


@dataclass
class Injection:
    method: str
    path_contains: str
    status: int
    times: int


@dataclass(eq=False)
class Watcher:
    kind: Kind
    namespace: str | None
    bookmarks: bool
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class Target:
    """What a request path names: a kind, maybe a namespace, maybe an object, maybe its /status."""

    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def flag(query: Any, name: str) -> bool:
    """A boolean query parameter as the apiserver parses it (Go's strconv.ParseBool: `true`, `True`, `1`...)."""
    return str(query.get(name, "")).lower() in ("1", "t", "true")


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_body(code, reason, message), status=code)


class FakeApiServer:
    """In-memory apiserver; `start()` it inside the test's event loop, `stop()` it at the end."""

    def __init__(
        self,
        *,
        kinds: tuple[Kind, ...] = ALL_KINDS + (LEASE,),
        history: int = 1000,
        token: str | None = None,
        watch_timeout: float = 1800.0,
    ):
        self.kinds = {(k.group, k.version, k.plural): k for k in kinds}
        self.token = token
        self.gone_as_status = False
        self.requests: list[Recorded] = []
        self.resource_version = 0
        self.compacted = 0  # watching from below this resourceVersion answers 410
        self._history: deque[tuple[int, Kind, str, dict[str, Any]]] = deque(maxlen=history)
        self._store: dict[Kind, dict[Ident, dict[str, Any]]] = {k: {} for k in kinds}
        self._watchers: set[Watcher] = set()
        self._forbidden: dict[str, set[str]] = {}
        self._missing: set[str] = set()
        self._injections: list[Injection] = []
        self._snapshots: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._watch_timeout = watch_timeout
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, *, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        host, port = site._server.sockets[0].getsockname()[:2]
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("end",))
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        token_file: str | None = None,
        context: str = "fake",
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> Path:
        """A kubeconfig whose context `context` points at this server, with the credentials given."""
        user: dict[str, Any] = {}
        cluster: dict[str, Any] = {"server": self.url}
        if ca_file:
            cluster["certificate-authority"] = ca_file
        if client_cert:
            user.update({"client-certificate": client_cert, "client-key": client_key})
        if token:
            user["token"] = token
        if token_file:
            user["tokenFile"] = token_file
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ---- state, as tests change it directly ----------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = self.kind_of(obj)
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        if kind.namespaced:
            meta.setdefault("namespace", "default")
        ident = (meta.get("namespace", "") if kind.namespaced else "", meta["name"])
        if ident in self._store[kind]:
            raise KeyError(f"{kind.kind} {ident} exists")
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        return self._commit(kind, ident, stored, "ADDED")

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = self.kind_of(obj)
        ident = self._ident(kind, obj)
        current = self._store[kind][ident]
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "generation"):
            meta[key] = current["metadata"].get(key)
        if stored.get("spec") != current.get("spec"):
            meta["generation"] = int(meta.get("generation") or 1) + 1
        return self._commit(kind, ident, stored, "MODIFIED")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = self.kind_of(obj)
        exists = self._ident(kind, obj) in self._store[kind]
        return self.update(obj) if exists else self.create(obj)

    def delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        ident = (namespace if kind.namespaced else "", name)
        obj = self._store[kind].pop(ident)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._publish(kind, "DELETED", obj)
        return copy.deepcopy(obj)

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._store[kind].get((namespace if kind.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: Kind) -> dict[Ident, dict[str, Any]]:
        return copy.deepcopy(self._store[kind])

    def kind_of(self, obj: dict[str, Any]) -> Kind:
        for kind in self.kinds.values():
            if kind.api_version == obj.get("apiVersion") and kind.kind == obj.get("kind"):
                return kind
        raise KeyError(f"no kind for {obj.get('apiVersion')} {obj.get('kind')}")

    # ---- failure injection -----------------------------------------------------------------

    def compact(self, *, break_watches: bool = False) -> None:
        """Forget all history: a watch from any resourceVersion seen so far will get 410.

        With `break_watches`, open watches get a 410 ERROR event too (as when a watcher falls behind).
        """
        self.compacted = self.resource_version
        self._history.clear()
        self._snapshots.clear()
        if break_watches:
            for watcher in list(self._watchers):
                watcher.queue.put_nowait(("gone",))

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream, without ending the chunked body."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("drop",))

    def end_watches(self) -> None:
        """End every open watch cleanly, as `timeoutSeconds` running out does."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("end",))

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watch that asked for them."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("bookmark", self.resource_version))

    def bump(self, count: int = 1) -> int:
        """Advance the resourceVersion without any change of a watched object (others' writes)."""
        self.resource_version += count
        return self.resource_version

    def forbid(self, plural: str, verbs: tuple[str, ...] = ("get", "list", "watch")) -> None:
        self._forbidden[plural] = set(verbs)

    def allow(self, plural: str) -> None:
        self._forbidden.pop(plural, None)

    def uninstall(self, plural: str) -> None:
        """Answer 404 for the resource, as when its CRD is not installed."""
        self._missing.add(plural)

    def install(self, plural: str) -> None:
        self._missing.discard(plural)

    def inject(self, *, method: str, path_contains: str, status: int, times: int = 1) -> None:
        """Answer the next `times` matching requests with `status`."""
        self._injections.append(Injection(method.upper(), path_contains, status, times))

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def watch_requests(self, plural: str) -> list[dict[str, str]]:
        return [
            r.query
            for r in self.requests
            if flag(r.query, "watch") and r.path.rstrip("/").endswith("/" + plural)
        ]

    # ---- HTTP --------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), request.headers.get("User-Agent", ""))
        )
        if self.token is not None:
            header = request.headers.get("Authorization", "")
            if header.split(" ", 1)[-1].strip() != self.token or not header.lower().startswith("bearer "):
                return status_response(401, "Unauthorized", "Unauthorized")
        for injection in self._injections:
            if (
                injection.times > 0
                and injection.method == request.method
                and injection.path_contains in request.path
            ):
                injection.times -= 1
                return status_response(injection.status, "Injected", f"injected {injection.status}")
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request.path)
        if target is None or target.kind.plural in self._missing:
            return status_response(404, "NotFound", "the server could not find the requested resource")
        verb = self._verb(request, target)
        if verb in self._forbidden.get(target.kind.plural, set()):
            return self._forbidden_response(target, verb)
        handler = {
            "list": self._list,
            "watch": self._watch,
            "get": self._get,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
        }[verb]
        return await handler(request, target)

    def _target(self, path: str) -> Target | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] != "status":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        kind = self.kinds.get((group, version, rest[0]))
        if kind is None:
            return None
        return Target(kind, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        if request.method == "GET" and target.name is None:
            return "watch" if flag(request.query, "watch") else "list"
        return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[
            request.method
        ]

    @staticmethod
    def _forbidden_response(target: Target, verb: str) -> web.Response:
        kind = target.kind
        resource = kind.plural + (f"/{target.subresource}" if target.subresource else "")
        where = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
        message = (
            f'{kind.resource} is forbidden: User "system:serviceaccount:agentic-system:agentic-cp" '
            f'cannot {verb} resource "{resource}" in API group "{kind.group}" {where}'
        )
        return status_response(403, "Forbidden", message)

    async def _list(self, request: web.Request, target: Target) -> web.Response:
        kind = target.kind
        token = request.query.get("continue")
        if token:
            snapshot_id, offset = json.loads(base64.b64decode(token))
            if snapshot_id not in self._snapshots:
                return status_response(410, "Expired", "The provided continue parameter is too old")
            version, items = self._snapshots[snapshot_id]
        else:
            offset, version = 0, self.resource_version
            items = [
                self._listed(kind, o)
                for ident, o in sorted(self._store[kind].items())
                if target.namespace is None or ident[0] == target.namespace
            ]
            snapshot_id = str(uuid.uuid4())
            self._snapshots[snapshot_id] = (version, items)
        limit = int(request.query.get("limit") or 0) or len(items) or 1
        page, rest = items[offset : offset + limit], offset + limit < len(items)
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if rest:
            meta["continue"] = base64.b64encode(json.dumps([snapshot_id, offset + limit]).encode()).decode()
            meta["remainingItemCount"] = len(items) - offset - limit
        else:
            self._snapshots.pop(snapshot_id, None)
        return web.json_response(
            {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta, "items": page}
        )

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        kind = target.kind
        since = int(request.query.get("resourceVersion") or 0)
        if since and since < self.compacted and self.gone_as_status:
            return status_response(410, "Expired", f"too old resource version: {since} ({self.compacted})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if since and since < self.compacted:
            await self._send(
                response,
                "ERROR",
                status_body(410, "Expired", f"too old resource version: {since} ({self.compacted})"),
            )
            await response.write_eof()
            return response
        watcher = Watcher(kind, target.namespace, flag(request.query, "allowWatchBookmarks"))
        for item in self._backlog(watcher, since):
            watcher.queue.put_nowait(item)
        self._watchers.add(watcher)
        try:
            await self._stream(request, response, watcher)
            await response.write_eof()
        except ConnectionResetError:  # the client went away
            pass
        finally:
            self._watchers.discard(watcher)
        return response

    def _backlog(self, watcher: Watcher, since: int) -> list[tuple[Any, ...]]:
        if not since:  # "any version": synthetic ADDED events for what exists now
            return [
                ("event", "ADDED", o) for o in self._store[watcher.kind].values() if self._sees(watcher, o)
            ]
        return [
            ("event", type_, o)
            for rv, kind, type_, o in self._history
            if rv > since and kind == watcher.kind and self._sees(watcher, o)
        ]

    async def _stream(self, request: web.Request, response: web.StreamResponse, watcher: Watcher) -> None:
        loop = asyncio.get_running_loop()
        timeout = float(request.query.get("timeoutSeconds") or self._watch_timeout)
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    item = await watcher.queue.get()
            except TimeoutError:
                break
            if item[0] == "event":
                await self._send(response, item[1], item[2])
            elif item[0] == "bookmark" and watcher.bookmarks:
                await self._send(
                    response,
                    "BOOKMARK",
                    {
                        "kind": watcher.kind.kind,
                        "apiVersion": watcher.kind.api_version,
                        "metadata": {"resourceVersion": str(item[1])},
                    },
                )
            elif item[0] == "gone":
                await self._send(response, "ERROR", status_body(410, "Expired", "too old resource version"))
                break
            elif item[0] == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # the connection is gone; let aiohttp clean up
            elif item[0] == "end":
                break

    @staticmethod
    async def _send(response: web.StreamResponse, type_: str, obj: dict[str, Any]) -> None:
        await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    async def _get(self, request: web.Request, target: Target) -> web.Response:
        obj = self._store[target.kind].get(self._target_ident(target))
        if obj is None:
            return self._not_found(target)
        return web.json_response(obj)

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        body = await request.json()
        body.setdefault("apiVersion", target.kind.api_version)
        body.setdefault("kind", target.kind.kind)
        if target.namespace:
            body.setdefault("metadata", {})["namespace"] = target.namespace
        try:
            return web.json_response(self.create(body), status=201)
        except KeyError:
            name = body["metadata"]["name"]
            return status_response(409, "AlreadyExists", f'{target.kind.resource} "{name}" already exists')

    async def _update(self, request: web.Request, target: Target) -> web.Response:
        body = await request.json()
        current = self._store[target.kind].get(self._target_ident(target))
        if current is None:
            return self._not_found(target)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            return self._conflict(target)
        body.setdefault("metadata", {}).update(name=target.name)
        if target.namespace:
            body["metadata"]["namespace"] = target.namespace
        if target.subresource == "status":
            body = {**current, "status": body.get("status")}
        return web.json_response(self.update(body))

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return status_response(
                415, "UnsupportedMediaType", f"unsupported patch type {request.content_type}"
            )
        patch = await request.json()
        current = self._store[target.kind].get(self._target_ident(target))
        if current is None:
            return self._not_found(target)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            return self._conflict(target)
        if target.subresource == "status":
            patched = {**current, "status": merge(current.get("status"), patch.get("status") or {})}
        else:
            patched = merge(current, patch)
        if patched == current:  # a no-op write changes nothing, not even the resourceVersion
            return web.json_response(current)
        return web.json_response(self.update(patched))

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        ident = self._target_ident(target)
        if ident not in self._store[target.kind]:
            return self._not_found(target)
        return web.json_response(self.delete(target.kind, *ident))

    # ---- internals ---------------------------------------------------------------------------

    def _commit(self, kind: Kind, ident: Ident, obj: dict[str, Any], type_: str) -> dict[str, Any]:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._store[kind][ident] = obj
        self._publish(kind, type_, obj)
        return copy.deepcopy(obj)

    def _publish(self, kind: Kind, type_: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0][0]
        self._history.append((self.resource_version, kind, type_, snapshot))
        for watcher in list(self._watchers):
            if watcher.kind == kind and self._sees(watcher, snapshot):
                watcher.queue.put_nowait(("event", type_, snapshot))

    @staticmethod
    def _sees(watcher: Watcher, obj: dict[str, Any]) -> bool:
        return watcher.namespace is None or obj["metadata"].get("namespace") == watcher.namespace

    @staticmethod
    def _listed(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        item = copy.deepcopy(obj)
        if not kind.is_crd:  # like the real one: built-in list items come without kind and apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return item

    @staticmethod
    def _ident(kind: Kind, obj: dict[str, Any]) -> Ident:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "default") if kind.namespaced else "", meta["name"]

    @staticmethod
    def _target_ident(target: Target) -> Ident:
        return (target.namespace or "") if target.kind.namespaced else "", target.name or ""

    @staticmethod
    def _not_found(target: Target) -> web.Response:
        return status_response(404, "NotFound", f'{target.kind.resource} "{target.name}" not found')

    @staticmethod
    def _conflict(target: Target) -> web.Response:
        return status_response(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {target.kind.resource} "
            f'"{target.name}": the object has been modified; please apply '
            f"your changes to the latest version and try again",
        )
