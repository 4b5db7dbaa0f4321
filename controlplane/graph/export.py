"""The graph as JSON (node-link) or Graphviz DOT: a picture of who may reach what."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from controlplane.api.base import ResourceKey
from controlplane.graph.model import AuthorizationGraph

_SHAPES = {"identity": ("ellipse", "#e3f2fd"), "gateway": ("box", "#ede7f6"), "listener": ("box", "#f3e5f5"),
           "route": ("note", "#fffde7"), "backend": ("cylinder", "#e8f5e9"), "policy": ("octagon", "#fff3e0")}
_EDGE_STYLES = {"allow": 'color="#2e7d32" penwidth=2', "external-auth": 'color="#ef6c00" style=dashed',
                "attached": 'color="#9e9e9e" style=dotted', "listener": "", "route": "", "backend": ""}


def to_plain(value: Any) -> Any:
    """JSON-friendly form of node and edge attributes."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, ResourceKey):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    return value


def to_json(graph: AuthorizationGraph) -> dict:
    g = graph.graph
    return {
        "nodes": [{"id": n, **to_plain(d)} for n, d in sorted(g.nodes(data=True))],
        "edges": [{"source": u, "target": v, "owner": k, **to_plain(d)}
                  for u, v, k, d in sorted(g.edges(keys=True, data=True), key=lambda e: e[:3])],
    }


def to_dot(graph: AuthorizationGraph) -> str:
    lines = ["digraph authorization {", "  rankdir=LR;", '  node [style=filled fontname="Helvetica"];',
             '  edge [fontname="Helvetica" fontsize=10];']
    for node, data in sorted(graph.graph.nodes(data=True)):
        shape, color = _SHAPES.get(data.get("type"), ("box", "#eeeeee"))
        lines.append(f"  {_q(node)} [label={_q(_label(node, data))} shape={shape} fillcolor={_q(color)}];")
    for u, v, data in sorted(graph.graph.edges(data=True), key=lambda e: e[:2]):
        label = ", ".join(r.split("#", 1)[1] for r in data.get("rules", ())) or _route_label(graph, u, v, data)
        attrs = _EDGE_STYLES.get(data.get("rel"), "")
        lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(label)} {attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(node: str, data: dict) -> str:
    kind, _, rest = node.partition(":")
    if kind == "listener":
        return f"listener {data.get('name')}\n{data.get('protocol')} :{data.get('port')}"
    if kind == "route":
        paths = [f"{m.path.type} {m.path.value}" for m in data.get("matches", ()) if m.path is not None]
        return f"route {rest}\n" + "\n".join(paths)
    if kind == "policy":
        return f"policy {rest}\n{data.get('action')}{'' if data.get('effective') else ' (not accepted)'}"
    if kind == "identity" and data.get("any"):
        return "any caller"
    return f"{kind}\n{rest}"


def _route_label(graph: AuthorizationGraph, u: str, v: str, data: dict) -> str:
    if data.get("rel") == "backend" and data.get("port"):
        return f"port {data['port']} weight {data.get('weight', 1)}"
    return ""


def _q(text: str) -> str:
    return json.dumps(text)
