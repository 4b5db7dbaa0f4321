"""A tiny kube-apiserver stand-in for the provisioner: server-side apply, GET (with label selectors), DELETE.

It speaks the wire protocol the provisioner uses (paths, query parameters, content types, `Status`
errors, list items without kind/apiVersion for built-in kinds) and records every request. Server-side
apply is modelled as "the applied object replaces the previous spec/data/metadata fields", keeping
what the server owns (uid, resourceVersion, creationTimestamp, status); it refuses any other patch type.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

_PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<group>[^/]+)/(?P<gv>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str


@dataclass
class FakeApi:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    requests: list[Request] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)  # plurals that answer 403
    _rv: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    def names(self, plural: str) -> set[tuple[str, str]]:
        return {(ns, name) for (p, ns, name) in self.objects if p == plural}

    @staticmethod
    def _status(code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                "message": message}
        return web.json_response(body, status=code)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Request(request.method, request.path, dict(request.query),
                                     request.headers.get("Content-Type", "")))
        match = _PATH.match(request.path)
        if not match:
            return self._status(404, "NotFound", f"no route {request.path}")
        plural, ns, name = match["plural"], match["ns"] or "", match["name"]
        if plural in self.forbidden:
            return self._status(403, "Forbidden", f"{plural} is forbidden")
        if name is None:
            if request.method != "GET":
                return self._status(405, "MethodNotAllowed", "collections are only listed here")
            return web.json_response(self._list(plural, ns, request.query.get("labelSelector", "")))
        key = (plural, ns, name)
        if request.method == "GET":
            obj = self.objects.get(key)
            return web.json_response(obj) if obj else self._status(404, "NotFound", f"{plural} {name} not found")
        if request.method == "DELETE":
            obj = self.objects.pop(key, None)
            if obj is None:
                return self._status(404, "NotFound", f"{plural} {name} not found")
            return web.json_response(obj)
        if request.method == "PATCH":
            if request.headers.get("Content-Type") != "application/apply-patch+yaml":
                return self._status(415, "UnsupportedMediaType", "only server-side apply is served here")
            if not request.query.get("fieldManager"):
                return self._status(422, "Invalid", "fieldManager is required for apply")
            body = yaml.safe_load(await request.text())
            meta = body.get("metadata") or {}
            if meta.get("name") != name or (meta.get("namespace") or "") != ns:
                return self._status(400, "BadRequest", "name/namespace in body and path differ")
            return web.json_response(self._apply(key, body))
        return self._status(405, "MethodNotAllowed", request.method)

    def _apply(self, key: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        old = self.objects.get(key)
        new = copy.deepcopy(body)
        meta = new["metadata"]
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp="2026-01-01T00:00:00Z")
            if new.get("kind") == "Service":  # allocated by the server, owned by no applier
                new.setdefault("spec", {})["clusterIP"] = f"10.96.0.{len(self.objects) + 10}"
        else:
            meta.update(uid=old["metadata"]["uid"], creationTimestamp=old["metadata"]["creationTimestamp"])
            if "status" in old:
                new["status"] = old["status"]
            if "clusterIP" in old.get("spec", {}):
                new.setdefault("spec", {}).setdefault("clusterIP", old["spec"]["clusterIP"])
        if new.get("kind") == "Secret" and "stringData" in new:  # the apiserver folds stringData into data
            new.setdefault("data", {}).update(
                {k: base64.b64encode(v.encode()).decode() for k, v in new.pop("stringData").items()})
        unchanged = old is not None and _comparable(old) == _comparable(new)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"] if unchanged else str(next(self._rv))
        self.objects[key] = new
        return json.loads(json.dumps(new))

    def _list(self, plural: str, namespace: str, selector: str) -> dict[str, Any]:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = []
        for (p, ns, _), obj in sorted(self.objects.items()):
            if p != plural or (namespace and ns != namespace):
                continue
            labels = obj.get("metadata", {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                item = copy.deepcopy(obj)
                item.pop("kind", None)
                item.pop("apiVersion", None)
                items.append(item)
        return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "99"}, "items": items}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return out
