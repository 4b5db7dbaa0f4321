"""`agentic-cp explain`: may SOURCE make this request, and which rule decides?

Why these exit codes: like `kubectl auth can-i`, a script asks with the exit status alone: 0 allow,
1 deny, 2 when the question itself is wrong (a flag, or a Gateway or XBackend that does not exist,
named with its nearest match instead of answered with a DENY). Tools are not checked: an XBackend
does not list its server's tools, so an unknown tool is simply one no rule grants.
"""

from __future__ import annotations

import argparse
import json

import yaml

from controlplane.commands.common import UsageError, controller_option, load_graph, ns_name, require_object
from controlplane.graph import explain as explain_mod
from controlplane.graph import export
from controlplane.graph.request import Request
from controlplane.graph.rules import DEFAULT_TRUST_DOMAIN
from controlplane.identity.spiffe import spiffe_id

OUTPUTS = ("table", "json", "yaml")


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="may SOURCE make this request, and which rule decides? (exit 0 allow, "
                                       "1 deny, 2 usage or reference error)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", action="append", required=True, metavar="PATH",
                   help="a file or folder of resources (repeatable)")
    p.add_argument("--source", required=True, help="a SPIFFE ID or NAMESPACE/SERVICEACCOUNT ('none': no cert)")
    p.add_argument("--gateway", metavar="NS/NAME", help="the Gateway the request arrives at")
    p.add_argument("--backend", metavar="NS/NAME", help="an XBackend: evaluate its policies alone")
    p.add_argument("--port", type=int, help="the Gateway listener's port")
    p.add_argument("--path", help="the request path (with --backend: default /mcp)")
    p.add_argument("--host", default="", help="the request's Host (authority)")
    p.add_argument("--http-method", help="default POST (GET with no MCP method and no tool)")
    p.add_argument("--mcp-method", help="the JSON-RPC method, e.g. tools/list (a --tool implies tools/call)")
    p.add_argument("--tool", help="the tool of a tools/call (params.name)")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a request header (repeatable)")
    p.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="how to print the decision")
    p.add_argument("--json", dest="output", action="store_const", const="json", help="same as --output json")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN,
                   help="the trust domain of NAMESPACE/SERVICEACCOUNT sources")
    controller_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    source = spiffe_source(args.source, args.trust_domain)
    headers = dict(header(h) for h in args.header)
    if args.backend:
        backend = ns_name("XBackend", args.backend)
        require_object(graph, backend, "--backend")
        request = Request.build(source=source, port=args.port or 0, path=args.path or "/mcp",
                                http_method=args.http_method, host=args.host, headers=headers,
                                mcp_method=args.mcp_method, tool=args.tool)
        decision = explain_mod.explain_backend(graph, backend, request)
    else:
        if not (args.gateway and args.port and args.path):
            raise UsageError("explain needs --gateway NS/NAME --port N --path P, or --backend NS/NAME")
        gateway = ns_name("Gateway", args.gateway)
        require_object(graph, gateway, "--gateway")
        request = Request.build(source=source, port=args.port, path=args.path, http_method=args.http_method,
                                host=args.host, headers=headers, mcp_method=args.mcp_method, tool=args.tool)
        decision = explain_mod.explain_gateway(graph, gateway, request)
    print_decision(args.output, request, decision)
    return 0 if decision.decision == explain_mod.ALLOW else 1


def print_decision(output: str, request: Request, decision: explain_mod.Decision) -> None:
    if output == "table":
        print("\n".join(table(request, decision)))
        return
    data = {"request": export.to_plain(request), **decision.to_dict()}
    text = json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False)
    print(text.rstrip("\n"))


def table(request: Request, decision: explain_mod.Decision) -> list[str]:
    what = request.mcp_method or request.http_method
    if request.tool:
        what += f" {request.tool}"
    lines = [f"{decision.decision.upper()}: {request.source or '(no client certificate)'} -> {what} {request.path}"]
    if decision.route:
        lines.append(f"  route:   {decision.route}")
    if decision.backend:
        lines.append(f"  backend: {decision.backend}")
    lines += [f"  {level.level:<8} {level.target}: {level.decision} - {level.reason}" for level in decision.levels]
    lines += [f"  requires the external authorizer to allow: {ext}" for ext in decision.external_auth]
    lines += [f"  rate limited by: {limit}" for limit in decision.rate_limits]
    lines += [f"  judged by the guardrail: {guardrail.describe()}" for guardrail in decision.guardrails]
    if not decision.levels:
        lines.append(f"  {decision.reason}")
    return lines


def spiffe_source(value: str, trust_domain: str) -> str | None:
    if value in ("", "-", "none"):
        return None
    if value.startswith("spiffe://"):
        return value
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise UsageError(f"--source must be a SPIFFE ID or NAMESPACE/SERVICEACCOUNT, not {value!r}")
    return spiffe_id(trust_domain, namespace, name, validate=False)


def header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep:
        raise UsageError(f"--header must be NAME:VALUE, not {value!r}")
    return name.strip(), val.strip()
