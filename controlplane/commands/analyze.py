"""`agentic-cp analyze PATH | --kubeconfig FILE`: every problem of a config, each with a code, its object,
its line (a cluster's objects have none: the object is named) and a fix.

From a cluster, every kind the directory source reads is listed once through the official client
(`sources.kubernetes.snapshot`, the Mirror the watch feeds), then checked exactly as files are. A kind the
apiserver refuses is an error (`Forbidden`, with the RBAC to grant); one it does not serve is a warning
(`NotServed`: its CRD is not installed, so there is nothing of it to check).

Why it reads status instead of checking refs itself: the graph already decides, for the status it
writes to the cluster, whether a backendRef resolves, a ReferenceGrant permits it, a listener conflicts
or a policy is over the per-target limit (graph/status.py). analyze prints those conditions; one owner
per fact, so analyze and the cluster's status never disagree. What status cannot say (a parentRef to a
Gateway that does not exist has no status entry; a typo'd field never reaches the graph) is found here.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import asdict, dataclass

from pydantic import BaseModel

from controlplane.api.base import Problem, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.gateway import HTTPRoute
from controlplane.api.registry import MODELS
from controlplane.commands.common import (
    CommandFailed,
    UsageError,
    controller_option,
    controllers,
    existing,
    nearest,
)
from controlplane.graph import status
from controlplane.graph.admission import cel_problem
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.reach import agents_without_tools, never_matching
from controlplane.graph.rules import DEFAULT_TRUST_DOMAIN
from controlplane.sources.directory import DirectorySource

ERROR, WARNING = "error", "warning"
WARNING_REASONS = {"LimitPerTargetExceeded"}  # valid, reported, just not in force
CHECKED = ("Accepted", "ResolvedRefs", "Conflicted")  # Programmed waits for a proxy: not a config problem


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    object: str  # "Kind namespace/name"
    origin: str
    line: int | None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.origin}:{self.line}" if self.line is not None else self.origin
        text = f"{where}: {self.severity} {self.code} {self.object}: {self.field or '-'}: {self.message}"
        return text + (f" (fix: {self.fix})" if self.fix else "")


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="every problem of a config, with a code, the object, its line and a fix "
                                       "(exit 1 on errors, 0 with only warnings)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders of resources (or --kubeconfig)")
    p.add_argument("--kubeconfig", metavar="FILE", help="analyze what the cluster this kubeconfig names holds")
    p.add_argument("--context", help="with --kubeconfig: its context (default: the file's current context)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="the mesh's trust domain")
    controller_option(p)
    p.set_defaults(run=run)


class Located(typing.Protocol):
    """Where objects came from: a DirectorySource (files, lines) or a cluster Snapshot (object names)."""

    origins: dict[ResourceKey, tuple[str, int]]

    def line_of(self, origin: str, doc_index: int) -> int | None: ...


def run(args: argparse.Namespace) -> int:
    if bool(args.paths) == bool(args.kubeconfig):
        raise UsageError("give PATH... or --kubeconfig FILE (one of them)")
    if args.context and not args.kubeconfig:
        raise UsageError("--context needs --kubeconfig")
    source, change, refused = _from_cluster(args) if args.kubeconfig else _from_files(args.paths)
    graph = AuthorizationGraph(trust_domain=args.trust_domain, controller_names=controllers(args))
    graph.apply(change)
    findings = refused + analyze(source, graph, [p for ps in change.problems.values() for p in ps])
    if args.output == "json":
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding)
        errors = sum(f.severity == ERROR for f in findings)
        print(f"{errors} errors, {len(findings) - errors} warnings in {len(change.upserts)} resources",
              file=sys.stderr)
    return 1 if any(f.severity == ERROR for f in findings) else 0


def _from_files(paths: list[str]) -> tuple[Located, ChangeSet, list[Finding]]:
    source = DirectorySource(*existing(paths))
    return source, source.load(), []


def _from_cluster(args: argparse.Namespace) -> tuple[Located, ChangeSet, list[Finding]]:
    import asyncio

    from controlplane.kube.client import TRANSIENT_ERRORS, ApiError, KubeApi, KubeconfigError
    from controlplane.sources.kubernetes import snapshot

    try:
        api = KubeApi.from_kubeconfig(path=args.kubeconfig, context=args.context)
    except KubeconfigError as err:
        raise UsageError(str(err)) from None

    async def read():
        try:
            return await snapshot(api)
        finally:
            await api.close()

    try:
        taken = asyncio.run(read())
    except (ApiError, *TRANSIENT_ERRORS) as err:
        raise CommandFailed(f"cannot read the cluster of --kubeconfig {args.kubeconfig}: "
                            f"{' '.join(str(err).split()) or type(err).__name__}; is its API server reachable?") from None
    return taken, taken.change, [_refused(failure) for failure in taken.failures]


def _refused(failure) -> Finding:
    """A kind the apiserver would not list: an error (its objects go unchecked), or a CRD not installed."""
    kind, origin = failure.kind, f"cluster/{failure.kind.resource}"
    if failure.error.status == 404:
        return Finding(WARNING, "NotServed", f"{kind.kind} -", origin, None, "-",
                       f"{kind.resource} {kind.version} is not served", f"install the CRD of {kind.resource}")
    return Finding(ERROR, "Forbidden", f"{kind.kind} -", origin, None, "-",
                   f"cannot list {kind.resource}: {failure.error.status} {failure.error.message}",
                   f"grant list on {kind.resource} to the kubeconfig's user")


def analyze(source: Located, graph: AuthorizationGraph, problems: list[Problem]) -> list[Finding]:
    findings = [invalid(source, p) for p in problems]
    findings += invalid_cel(source, graph)
    findings += status_findings(source, graph)
    findings += dangling_parents(source, graph)
    findings += unreachable(source, graph)
    return sorted(set(findings), key=lambda f: (f.origin, f.line or 0, f.code, f.object, f.field))


def invalid(source: Located, problem: Problem) -> Finding:
    """A document the API server would refuse (validate's problem), with the nearest field for a typo."""
    who = f"{problem.kind or '-'} {problem.namespace}/{problem.name}" if problem.namespace else \
        f"{problem.kind or '-'} {problem.name or '-'}"
    unknown = "Extra inputs are not permitted" in problem.message
    fix = ""
    if unknown and problem.field:
        bad = problem.field.rsplit(".", 1)[-1]
        hint = nearest(bad, field_aliases(problem.kind))
        fix = f"did you mean {hint!r}?" if hint else ""
    return Finding(ERROR, "UnknownField" if unknown else "Invalid", who, problem.origin,
                   source.line_of(problem.origin, problem.doc_index), problem.field, problem.message, fix)


def invalid_cel(source: Located, graph: AuthorizationGraph) -> list[Finding]:
    found = []
    for policy in graph.of_kind("XAccessPolicy"):
        problem = cel_problem(policy)
        if problem is not None:
            found.append(_about(source, policy.key, ERROR, "InvalidCEL", problem.problem.field,
                                problem.problem.message, "use only the request.* variables the README lists"))
    return found


def status_findings(source: Located, graph: AuthorizationGraph) -> list[Finding]:
    """Every False Accepted/ResolvedRefs and every True Conflicted in the statuses the graph computes."""
    found = []
    for (kind, namespace, name), state in status.all_statuses(graph).items():
        key = ResourceKey(kind, namespace, name)
        for field, condition in _conditions(state):
            bad = (condition["type"] == "Conflicted") == (condition["status"] == "True")
            if condition["type"] not in CHECKED or not bad or condition["reason"] == "InvalidCEL":  # InvalidCEL: reported with its field above
                continue
            severity = WARNING if condition["reason"] in WARNING_REASONS else ERROR
            found.append(_about(source, key, severity, condition["reason"], field, condition["message"],
                                _fix_for(graph, key, condition["message"])))
    return found


def _conditions(state: dict) -> typing.Iterator[tuple[str, dict]]:
    for condition in state.get("conditions", []):
        yield "status.conditions", condition
    for listener in state.get("listeners", []):
        for condition in listener.get("conditions", []):
            yield f"status.listeners[{listener['name']}]", condition
    for entry in state.get("parents", []):
        for condition in entry.get("conditions", []):
            yield f"status.parents[{entry['parentRef'].get('name')}]", condition
    for entry in state.get("ancestors", []):
        for condition in entry.get("conditions", []):
            yield f"status.ancestors[{entry['ancestorRef'].get('name')}]", condition


def _fix_for(graph: AuthorizationGraph, key: ResourceKey, message: str) -> str:
    """For "KIND NS/NAME ... not found / does not exist": the nearest existing object of that kind; for
    a reference no ReferenceGrant allows: the grant to add."""
    words = message.split()
    if len(words) >= 2 and "no ReferenceGrant allows" in message:
        kind, namespace = words[0], words[1].partition("/")[0]
        return f"add a ReferenceGrant in namespace {namespace} from {key.kind} in {key.namespace} to {kind}"
    if len(words) < 2 or "/" not in words[1] or not ("not found" in message or "does not exist" in message):
        return ""
    kind, ref = words[0], words[1].rstrip(":")
    hint = nearest(ref, [obj.key.ref for obj in graph.of_kind(kind)])
    return f"did you mean {kind} {hint}?" if hint else f"create {kind} {ref}"


def dangling_parents(source: Located, graph: AuthorizationGraph) -> list[Finding]:
    """parentRefs to a Gateway that does not exist: no Gateway, so no status entry says it."""
    found = []
    gateways = [gw.key.ref for gw in graph.of_kind("Gateway")]
    for route in graph.of_kind("HTTPRoute"):
        assert isinstance(route, HTTPRoute)
        for index, ref in enumerate(route.spec.parent_refs or []):
            if (ref.kind or "Gateway") != "Gateway":
                continue
            target = ResourceKey("Gateway", ref.namespace or route.key.namespace, ref.name)
            if graph.get(target) is None:
                hint = nearest(target.ref, gateways)
                found.append(_about(source, route.key, ERROR, "ParentNotFound", f"spec.parentRefs[{index}]",
                                    f"Gateway {target.ref} does not exist",
                                    f"did you mean Gateway {hint}?" if hint else f"create Gateway {target.ref}"))
    return found


def unreachable(source: Located, graph: AuthorizationGraph) -> list[Finding]:
    """Warnings, since such a config is valid: rules that can never match, agents that reach no tool."""
    found = [_about(source, n.policy, WARNING, "NeverMatches", f"spec.rules[{n.rule_index}].authorization",
                    f"this rule can never match: {n.why}", "remove the rule or the condition that excludes it")
             for n in never_matching(graph)]
    found += [_about(source, policy, WARNING, "AgentWithoutTools", "spec.rules",
                     f"{agent} has no path to any tool: no Gateway listener -> HTTPRoute -> XBackend path allows "
                     "its tools/call at both levels", "grant it a tool at the Gateway and at an XBackend")
              for policy, agent in agents_without_tools(graph)]
    return found


def _about(source: Located, key: ResourceKey, severity: str, code: str, field: str, message: str,
           fix: str) -> Finding:
    origin, index = source.origins.get(key, ("-", 0))
    return Finding(severity, code, f"{key.kind} {key.ref}", origin, source.line_of(origin, index), field,
                   message, fix)


def field_aliases(kind: str) -> set[str]:
    """Every field name (as written in YAML) anywhere in the kind's models: what a typo was meant to be."""
    names: set[str] = set()
    seen: set[type] = set()
    stack = [model for (_, _, k), model in MODELS.items() if k == kind]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
            stack.extend(_models_in(info.annotation))
    return names


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
