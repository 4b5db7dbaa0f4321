"""Replay upstream's e2e and conformance expectations (cases.yaml) against the authorization graph.

Each suite's setup files are applied, then each case's deletions, applications and JSON patches, in
order, to one graph updated incrementally (and checked against a full rebuild after every case);
then each call is explained offline and compared with the expected allow or deny. What explain
cannot decide offline is skipped with its reason: calls that need the external authorizer
(Authorino) and TLS-handshake outcomes (those are checked with real Envoy elsewhere).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph.explain import explain_gateway
from controlplane.graph.model import AuthorizationGraph, build
from controlplane.graph.request import Request

NAMESPACE = "replay-ns"
PLACEHOLDERS = ("e2e-test-ns", "quickstart-ns")
CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "kube-agentic-networking"},
         "spec": {"controllerName": "sigs.k8s.io/kube-agentic-networking-controller"}}


@dataclass
class Outcome:
    suite: str
    case: str
    call: dict
    expected: str
    actual: str | None  # None: skipped
    why: str = ""


@dataclass
class Replay:
    root: Path
    suite: dict
    namespace: str
    docs: dict[ResourceKey, dict] = field(default_factory=dict)
    graph: AuthorizationGraph = field(default_factory=AuthorizationGraph)

    def _load(self, rel: str) -> list[dict]:
        text = (self.root / rel).read_text()
        for placeholder in PLACEHOLDERS:
            text = text.replace(placeholder, self.namespace)
        text = text.replace('"{GATEWAY_CLASS_NAME}"', "kube-agentic-networking")
        return [d for d in yaml.safe_load_all(text) if d]

    def _keyed(self, rel: str) -> dict[ResourceKey, dict]:
        out = {}
        for doc in self._load(rel):
            obj = parse_object(doc)
            if obj is not None:
                out[obj.key] = doc
        return out

    def apply_files(self, rels: list[str]) -> None:
        for rel in rels:
            self.docs.update(self._keyed(rel))

    def delete_files(self, rels: list[str]) -> None:
        for rel in rels:
            for key in self._keyed(rel):
                self.docs.pop(key, None)

    def delete_objects(self, objects: list[dict]) -> None:
        for o in objects:
            self.docs.pop(ResourceKey(o["kind"], o["namespace"].replace("<ns>", self.namespace), o["name"]), None)

    def patch(self, patch: dict) -> None:
        o = patch["object"]
        key = ResourceKey(o["kind"], o["namespace"].replace("<ns>", self.namespace), o["name"])
        doc = copy.deepcopy(self.docs[key])
        for op in patch["ops"]:
            assert op["op"] == "replace"
            *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
            target = doc
            for part in parents:
                target = target[part]
            target[last] = op["value"]
        self.docs[key] = doc

    def sync(self) -> None:
        """Bring the graph to `docs` incrementally, and check it equals a full rebuild."""
        wanted = {k: parse_object(d) for k, d in self.docs.items()}
        change = ChangeSet(upserts=list(wanted.values()),
                           deletes=[k for k in self.graph.objects if k not in wanted])
        self.graph.apply(change)
        assert self.graph.signature() == build(wanted.values()).signature(), "incremental != full rebuild"


def replay_suite(root: Path, suite: dict) -> list[Outcome]:
    namespace = NAMESPACE if suite["namespace"] == "<ns>" else suite["namespace"]
    replay = Replay(root, suite, namespace)
    replay.docs[ResourceKey("GatewayClass", "", "kube-agentic-networking")] = CLASS
    for step in suite.get("setup", []):
        if "file" in step:
            replay.apply_files([step["file"]])
        if "create ServiceAccount" in step.get("step", ""):
            name = step["step"].split("ServiceAccount ")[1].split()[0]
            replay.docs[ResourceKey("ServiceAccount", namespace, name)] = {
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    outcomes: list[Outcome] = []
    for case in suite["cases"]:
        baseline = dict(replay.docs)
        replay.delete_objects(case.get("delete_objects", []))
        replay.delete_files(case.get("delete", []))
        replay.apply_files(case.get("apply", []))
        if case.get("patch"):
            replay.patch(case["patch"])
        replay.sync()
        outcomes += _status_outcomes(replay, suite, case)
        outcomes += [_call_outcome(replay, suite, case, call) for call in case.get("calls", [])]
        if suite["suite"] == "TestConformance":
            replay.docs = baseline
            replay.sync()
    return outcomes


def _caller(suite: dict, call: dict, namespace: str) -> str:
    callers = suite.get("callers") or [suite["caller"]]
    caller = next((c for c in callers if c["pod"] == call.get("as")), callers[0])
    return caller["spiffe"].replace("<ns>", namespace)


def _call_outcome(replay: Replay, suite: dict, case: dict, call: dict) -> Outcome:
    expected = {"allow": "allow", "deny": "deny", "http-200": "allow", "tls-failure": "tls"}[call["expect"]]
    needs = set(case.get("needs", [])) | set(suite.get("needs", []))
    if "authorino" in needs:
        return Outcome(suite["suite"], case["name"], call, expected, None, "needs the external authorizer")
    if expected == "tls":
        return Outcome(suite["suite"], case["name"], call, expected, None, "a TLS handshake outcome")
    gw = suite["gateway"]
    gateway = ResourceKey("Gateway", gw.get("namespace", replay.namespace), gw["name"])
    path = case.get("path") or suite["path"]
    headers = {"mcp-protocol-version": "2025-11-25", "mcp-session-id": "session-1"}
    request = Request.build(source=_caller(suite, call, replay.namespace), port=gw["port"], path=path,
                            http_method=call.get("http_method"), host=f"10.0.0.1:{gw['port']}",
                            headers=headers, mcp_method=None if call.get("http_method") else call["method"],
                            tool=call.get("tool"))
    decision = explain_gateway(replay.graph, gateway, request)
    return Outcome(suite["suite"], case["name"], call, expected, decision.decision, decision.reason)


def _status_outcomes(replay: Replay, suite: dict, case: dict) -> list[Outcome]:
    outcomes = []
    for check in case.get("status_checks", []):
        o = check["object"]
        if o["kind"] != "XAccessPolicy":
            continue
        node = replay.graph.node(f"policy:{o['namespace']}/{o['name']}")
        conditions = [c for *_, c in node["conditions"]] if node else []
        if "LimitPerTargetExceeded" in check["expect"]:
            ok = any(not c.accepted and c.reason == "LimitPerTargetExceeded" for c in conditions)
        else:
            ok = bool(conditions) and all(c.accepted for c in conditions)
        outcomes.append(Outcome(suite["suite"], case["name"], {"status": check["expect"]}, "status",
                                "status" if ok else f"conditions {conditions}"))
    return outcomes
