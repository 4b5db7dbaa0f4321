"""`agentic-cp translate`: the Envoy resources serve would send one Gateway's proxy, offline.

Why one function (`offline_resources`): the golden tests call it too, so what an operator reads here
is what the goldens pin and what serve publishes (`roles.gateway`). The one difference: SDS secrets
(the server certificate and the trust bundle) are issued by the CA at serve time, so they are named
in the output's header, never printed.
"""

from __future__ import annotations

import argparse
import json

import yaml

from controlplane.api.base import ResourceKey
from controlplane.commands.common import (
    CommandFailed,
    UsageError,
    controller_option,
    load_graph,
    nearest,
    ns_name,
    require_object,
)
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rules import DEFAULT_TRUST_DOMAIN
from controlplane.graph.view import egress_gateways, gateway_view, workloads
from controlplane.identity import sds
from controlplane.translate.context import OtelCollector
from controlplane.translate.roles.egress import egress_resources
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.translate.roles.sidecar import sidecar_resources
from controlplane.xds import resources as types
from controlplane.xds.resources import Resource

TYPE_NAMES = {types.LISTENER: "listeners", types.ROUTE: "routes", types.CLUSTER: "clusters",
              types.ENDPOINT: "endpoints", types.SECRET: "secrets"}
SERVE_TIME_SECRETS = (sds.SERVER_CERT_SECRET, sds.TRUST_BUNDLE_SECRET)
SIDECAR_SECRETS = (sds.WORKLOAD_CERT_SECRET, sds.TRUST_BUNDLE_SECRET)


def add_parser(sub) -> None:
    p = sub.add_parser("translate", help="the Envoy resources serve would send a Gateway's proxy, offline",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", action="append", required=True, metavar="PATH",
                   help="a file or folder of resources (repeatable)")
    proxy = p.add_mutually_exclusive_group(required=True)
    proxy.add_argument("--gateway", metavar="NS/NAME", help="the Gateway whose proxy to translate for")
    proxy.add_argument("--workload", metavar="NS/SERVICEACCOUNT", help="the workload whose sidecar to translate for")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="the mesh's trust domain")
    controller_option(p)
    p.set_defaults(run=run)


def offline_resources(graph: AuthorizationGraph, proxy: ResourceKey, *,
                      otel_collector: OtelCollector | None = None) -> list[Resource]:
    """What serve publishes for a Gateway's proxy or a workload's sidecar (a ServiceAccount), less the
    secrets only the CA can issue; with serve's --otel-collector when given."""
    if proxy.kind == "ServiceAccount":
        return sidecar_resources(graph, proxy, secrets=[], otel_collector=otel_collector)
    if proxy in egress_gateways(graph):  # an egress Gateway's proxy (credentials never printed)
        return egress_resources(graph, proxy, secrets=[], otel_collector=otel_collector)
    return gateway_resources(graph, proxy, secrets=[], otel_collector=otel_collector)


def as_documents(resources: list[Resource]) -> dict[str, list[dict]]:
    """Per type (listeners, routes, ...), in translation order: `{name, resource}` as proto3 JSON."""
    docs: dict[str, list[dict]] = {}
    for r in resources:
        payload = r.payload if isinstance(r.payload, dict) else r.payload.to_dict()
        docs.setdefault(TYPE_NAMES[r.type_url], []).append({"name": r.name, "resource": payload})
    return docs


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    proxy = _workload(graph, args.workload) if args.workload else _gateway(graph, args.gateway)
    docs = as_documents(offline_resources(graph, proxy))
    what = f"{'sidecar of ' if args.workload else ''}{proxy.kind} {proxy.ref}"
    secrets = SIDECAR_SECRETS if args.workload else SERVE_TIME_SECRETS
    header = {proxy.kind.lower(): proxy.ref, "serveTimeSecrets": list(secrets),
              "note": "SDS secrets are issued by the CA at serve time; only their names are shown"}
    if args.output == "json":
        print(json.dumps({**header, **docs}, indent=2))
    else:
        print(f"# Envoy resources for the {what}, as serve sends them.")
        print(f"# SDS secrets are issued at serve time and not shown: {', '.join(secrets)}")
        print(yaml.safe_dump(docs, sort_keys=False, width=120).rstrip("\n"))
    return 0


def _gateway(graph: AuthorizationGraph, ref: str) -> ResourceKey:
    gateway = ns_name("Gateway", ref)
    require_object(graph, gateway, "--gateway")
    if gateway_view(graph, gateway) is None:
        raise CommandFailed(f"Gateway {gateway.ref} is not of a GatewayClass this control plane manages: "
                            "serve sends its proxy nothing (check its gatewayClassName and --controller-name)")
    return gateway


def _workload(graph: AuthorizationGraph, ref: str) -> ResourceKey:
    workload = ns_name("ServiceAccount", ref)
    known = [key.ref for key in workloads(graph)]
    if workload.ref not in known:
        hint = nearest(workload.ref, known)
        raise UsageError(f"--workload {workload.ref}: no such workload (ServiceAccount, Pod or Service endpoint); "
                         + (f"did you mean {hint}?" if hint else f"known: {', '.join(known[:5]) or 'none'}"))
    return workload
