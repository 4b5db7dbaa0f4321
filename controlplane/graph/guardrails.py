"""GuardrailPolicy in the graph: its fragment (attachments and `Accepted` per targetRef) and the guardrail
it names, resolved for enforcement (a cluster name, its endpoints, what is inspected, how it fails).

Why one guardrail per target: the guardrail sees and may rewrite a whole body, and two services judging
the same body in an order nobody chose is a policy nobody wrote. So the oldest GuardrailPolicy on a
target (creation time, then namespace/name, as XAccessPolicy seniority) is `Accepted` there; a younger
one is `Conflicted` on that target and enforced nowhere it conflicts. A Gateway's and an XBackend's
guardrails are two levels and both run (the Gateway's first), as the access policies' levels do.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.base import ResourceKey
from controlplane.api.governance import FailureMode, GuardrailPolicy, timeout_ms
from controlplane.graph.admission import Condition, seniority
from controlplane.graph.fragments import (
    Output,
    Reader,
    _ready_endpoints,
    backend_node,
    gateway_node,
    target_problem,
)

ACCEPTED = Condition(True, "Accepted", "the guardrail inspects traffic on this target")
CONFLICTED = "Conflicted"


@dataclass(frozen=True)
class ResolvedGuardrail:
    """A guardrail as translation reads it: where it runs, what it sees, and how it fails."""

    policy: ResourceKey
    cluster: str  # the Envoy cluster of the guardrail service
    authority: str  # the gRPC :authority Envoy sends
    address: tuple[str, int] | None  # a fixed HOST:PORT (a DNS cluster), or None: `endpoints` (EDS)
    endpoints: tuple[tuple[str, int], ...]  # a Service's ready endpoints; none: every call fails (closed)
    timeout_ms: int
    requests: bool  # request bodies are judged
    responses: bool  # response bodies are judged
    methods: tuple[str, ...]  # the MCP methods judged ("*": every one)
    fail_open: bool

    @property
    def ref(self) -> str:
        return self.policy.ref


def guardrail_node(key: ResourceKey) -> str:
    return f"guardrail:{key.ref}"


def guardrail_index(target: ResourceKey) -> tuple:
    return ("guardrails-for", target)


def guardrail_on(graph, target_id: str, listener: str | None) -> ResolvedGuardrail | None:
    """The guardrail in force on a target (a networkx graph node); a Gateway's may name listeners."""
    nodes = [graph.nodes[nid] for nid, _, data in graph.in_edges(target_id, data=True) if data["rel"] == "guarded"]
    nodes = [n for n in nodes if listener is None or not n["sections"] or listener in n["sections"]]
    return nodes[0]["guardrail"] if nodes else None  # one accepted per target (the fragment's rule)


def resolve_guardrail(policy: GuardrailPolicy, reader: Reader) -> ResolvedGuardrail:
    spec, service = policy.spec, policy.spec.service
    if service.address is not None:
        host, _, port_text = service.address.rpartition(":")  # HOST:PORT, checked by the model's pattern
        host, port = host.strip("[]"), int(port_text)
        cluster, authority, address, endpoints = f"guardrail/address/{host}/{port}", host, (host, port), ()
    else:
        ref = service.backend_ref
        namespace = ref.namespace or policy.namespace
        cluster = f"guardrail/service/{namespace}/{ref.name}/{ref.port}"
        authority, address = f"{ref.name}.{namespace}.svc.cluster.local", None
        endpoints = _ready_endpoints(namespace, ref.name, ref.port, reader)  # read: a change recomputes
    return ResolvedGuardrail(policy.key, cluster, authority, address, endpoints, timeout_ms(service.timeout),
                             spec.inspect.requests, spec.inspect.responses, tuple(spec.methods),
                             spec.failure_mode is FailureMode.OPEN)


def _conflict(policy: GuardrailPolicy, target: ResourceKey, reader: Reader) -> Condition | None:
    """Why this policy is not the one in force on `target` (an older GuardrailPolicy is), or None."""
    others = [p for p in reader.index(guardrail_index(target)) if isinstance(p, GuardrailPolicy)]
    senior = min(others + [policy], key=seniority)
    if senior.key == policy.key:
        return None
    return Condition(False, CONFLICTED, f"GuardrailPolicy {senior.key.ref} is older and guards {target} already")


def guardrail_fragment(policy: GuardrailPolicy, reader: Reader) -> Output:
    conditions = []
    for ref in policy.spec.target_refs:
        key, problem = target_problem(policy, ref, reader)
        if problem is None:
            problem = _conflict(policy, key, reader)
        conditions.append((ref, key, problem or ACCEPTED))
    sections = frozenset(ref.section_name for ref in policy.spec.target_refs if ref.section_name)
    out = Output()
    nid = guardrail_node(policy.key)
    out.nodes[nid] = {"type": "guardrail_policy", "key": policy.key, "guardrail": resolve_guardrail(policy, reader),
                      "sections": sections,
                      "conditions": tuple((ref.kind, ref.name, ref.section_name, c) for ref, _, c in conditions)}
    for _, key, cond in conditions:
        if cond.accepted:
            out.edge(nid, gateway_node(key) if key.kind == "Gateway" else backend_node(key), rel="guarded")
    return out
