"""`agentic-cp`: validate resources, explain decisions, draw the graph, serve xDS, write bootstraps."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from controlplane.api import regex
from controlplane.api.base import Problem, ResourceKey
from controlplane.graph import explain as explain_mod
from controlplane.graph import export
from controlplane.graph.admission import cel_problem
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.request import Request
from controlplane.graph.rules import DEFAULT_TRUST_DOMAIN
from controlplane.identity.spiffe import spiffe_id
from controlplane.sources.directory import DirectorySource


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    if getattr(args, "max_regex_program_size", None) is not None:
        regex.set_max_program_size(args.max_regex_program_size)
    try:
        return args.run(args)
    except UsageError as err:
        print(f"agentic-cp: {err}", file=sys.stderr)
        return 2
    except CommandFailed as err:
        print(f"agentic-cp: {err}", file=sys.stderr)
        return 1


class UsageError(Exception):
    pass


class CommandFailed(Exception):
    """The input was fine but the command could not do its work (e.g. a directory is not writable)."""


# --- validate ---------------------------------------------------------------------------------------------


def run_validate(args: argparse.Namespace) -> int:
    source = DirectorySource(*_existing(args.paths), limits=_limits(args))
    change = source.load()
    problems = [p for ps in change.problems.values() for p in ps]
    graph = AuthorizationGraph(trust_domain=args.trust_domain, controller_names=_controllers(args))
    graph.apply(change)
    problems += _semantic_problems(graph, source)
    for problem in sorted(problems, key=lambda p: (p.origin, p.doc_index)):
        print(problem)
    for warning in _admission_warnings(graph):
        print(f"warning: {warning}", file=sys.stderr)
    if not problems:
        print(f"{len(change.upserts)} resources valid", file=sys.stderr)
    return 1 if problems else 0


def _semantic_problems(graph: AuthorizationGraph, source: DirectorySource) -> list[Problem]:
    """What the API server would accept but the controller refuses: CEL that does not compile."""
    problems = []
    for policy in graph.of_kind("XAccessPolicy"):
        invalid = cel_problem(policy)
        if invalid is not None:
            problems.append(invalid.problem.located(*source.origins.get(policy.key, ("-", 0))))
    return problems


def _admission_warnings(graph: AuthorizationGraph) -> list[str]:
    warnings = []
    for node, data in graph.graph.nodes(data=True):
        if data.get("type") != "policy":
            continue
        for kind, name, _, cond in data["conditions"]:
            if not cond.accepted and cond.reason != "InvalidCEL":
                warnings.append(f"XAccessPolicy {data['key'].ref} on {kind} {name}: not accepted "
                                f"({cond.reason}): {cond.message}")
    return sorted(warnings)


# --- explain ----------------------------------------------------------------------------------------------


def run_explain(args: argparse.Namespace) -> int:
    graph = _load_graph(args)
    source = _spiffe_source(args.source, args.trust_domain)
    headers = dict(_header(h) for h in args.header)
    if args.backend:
        request = Request.build(source=source, port=args.port or 0, path=args.path or "/mcp",
                                http_method=args.http_method, host=args.host, headers=headers,
                                mcp_method=args.mcp_method, tool=args.tool)
        decision = explain_mod.explain_backend(graph, _ns_name("XBackend", args.backend), request)
    else:
        if not (args.gateway and args.port and args.path):
            raise UsageError("explain needs --gateway NS/NAME --port N --path P, or --backend NS/NAME")
        request = Request.build(source=source, port=args.port, path=args.path, http_method=args.http_method,
                                host=args.host, headers=headers, mcp_method=args.mcp_method, tool=args.tool)
        decision = explain_mod.explain_gateway(graph, _ns_name("Gateway", args.gateway), request)
    if args.json:
        print(json.dumps({"request": export.to_plain(request), **decision.to_dict()}, indent=2))
    else:
        _print_decision(request, decision)
    return 0


def _print_decision(request: Request, decision: explain_mod.Decision) -> None:
    what = request.mcp_method or request.http_method
    if request.tool:
        what += f" {request.tool}"
    print(f"{decision.decision.upper()}: {request.source or '(no client certificate)'} -> {what} {request.path}")
    if decision.route:
        print(f"  route:   {decision.route}")
    if decision.backend:
        print(f"  backend: {decision.backend}")
    for level in decision.levels:
        print(f"  {level.level:<8} {level.target}: {level.decision} - {level.reason}")
    for ext in decision.external_auth:
        print(f"  requires the external authorizer to allow: {ext}")
    if not decision.levels:
        print(f"  {decision.reason}")


def _spiffe_source(value: str, trust_domain: str) -> str | None:
    if value in ("", "-", "none"):
        return None
    if value.startswith("spiffe://"):
        return value
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise UsageError(f"--source must be a SPIFFE ID or NAMESPACE/SERVICEACCOUNT, not {value!r}")
    return spiffe_id(trust_domain, namespace, name, validate=False)


def _header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep:
        raise UsageError(f"--header must be NAME:VALUE, not {value!r}")
    return name.strip(), val.strip()


# --- graph ------------------------------------------------------------------------------------------------


def run_graph(args: argparse.Namespace) -> int:
    graph = _load_graph(args)
    if args.format == "dot":
        sys.stdout.write(export.to_dot(graph))
    else:
        print(json.dumps(export.to_json(graph), indent=2))
    return 0


# --- serve ------------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from controlplane.controller import ControlPlane, Settings
    from controlplane.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    settings = Settings(state_dir=Path(args.state_dir), trust_domain=_trust_domain(args.state_dir, args.trust_domain),
                        xds_address=args.xds_address, admin_address=args.admin_address,
                        controller_names=_controllers(args), admin_token=_admin_token(args.admin_token_file),
                        xds_limits=_xds_limits(args))
    if args.remote_cluster:
        logging.getLogger("agentic-cp").warning("--remote-cluster is not supported yet; ignoring %s",
                                                ", ".join(args.remote_cluster))

    async def serve() -> None:
        if args.config:
            source = DirectorySource(*_existing(args.config), limits=_limits(args), settle_ms=args.settle_ms)
            control_plane = ControlPlane(source=source, settings=settings)
        else:
            control_plane = await _kubernetes_control_plane(args, settings)
        await control_plane.run()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def _admin_token(path: str | None) -> str | None:
    """The bearer token /debug/* requires, from a file (a mounted Secret); None without the flag."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise CommandFailed(f"cannot read --admin-token-file {path}: {err.strerror or err}") from None
    if not token:
        raise UsageError(f"--admin-token-file {path} is empty")
    return token


def _control_plane_account(args: argparse.Namespace) -> tuple[str, str]:
    """The control plane's namespace and ServiceAccount: flags, else the pod's (downward API), else defaults."""
    import os

    from controlplane.identity.xds_auth import CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT

    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or CONTROL_PLANE_NAMESPACE
    service_account = args.service_account or os.environ.get("POD_SERVICE_ACCOUNT") or CONTROL_PLANE_SERVICE_ACCOUNT
    return namespace, service_account


def _cluster_options(args: argparse.Namespace):
    import os

    from controlplane.kube.serve import ClusterOptions

    namespace, service_account = _control_plane_account(args)
    return ClusterOptions(in_cluster=args.in_cluster, kubeconfig=args.kubeconfig, context=args.context,
                          namespace=namespace, service_account=service_account, ca_secret=args.ca_secret,
                          proxy_image=args.proxy_image,
                          xds_service=os.environ.get("AGENTIC_CP_XDS_SERVICE") or args.xds_service)


async def _kubernetes_control_plane(args: argparse.Namespace, settings):
    from controlplane.identity.ca import CaStateError
    from controlplane.kube.serve import cluster_control_plane

    try:
        return await cluster_control_plane(_cluster_options(args), settings)
    except CaStateError as err:
        raise UsageError(str(err)) from None


def _in_kubernetes(args: argparse.Namespace, settings, *, ca=None):
    from controlplane.kube.serve import control_plane_for_cluster

    return control_plane_for_cluster(_cluster_options(args), settings, ca=ca)


# --- identity and bootstrap ------------------------------------------------------------------------------


def _trust_domain(state_dir: str, given: str | None) -> str:
    """The one given, else the one the state dir's CA was made for, else the default."""
    from controlplane.identity.ca import stored_trust_domain

    if given is not None:
        return given
    return stored_trust_domain(Path(state_dir)) or DEFAULT_TRUST_DOMAIN


def _ca(state_dir: str, trust_domain: str | None):
    from controlplane.identity.ca import CaStateError, CertificateAuthority

    trust_domain = _trust_domain(state_dir, trust_domain)
    try:
        return CertificateAuthority.load_or_create(Path(state_dir), trust_domain=trust_domain)
    except CaStateError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise CommandFailed(_os_error("--state-dir", state_dir, err)) from None


def _os_error(flag: str, value: str, err: OSError) -> str:
    where = f" ({err.filename})" if err.filename and str(err.filename) != value else ""
    return f"cannot write {flag} {value}{where}: {err.strerror or err}"


def _write_identity(out: str, identity, bundle_pem: bytes):
    from controlplane.identity.files import write_identity

    try:
        return write_identity(Path(out), identity, bundle_pem)
    except OSError as err:
        raise CommandFailed(_os_error("--out", out, err)) from None


def run_identity_issue(args: argparse.Namespace) -> int:
    from controlplane.identity.spiffe import InvalidSpiffeId, validate_workload_id

    ttl = _hours(args.ttl_hours)
    try:
        validate_workload_id(args.spiffe_id)
    except InvalidSpiffeId as err:
        raise UsageError(str(err)) from None
    ca = _ca(args.state_dir, args.trust_domain)
    try:
        identity = ca.issue(args.spiffe_id, dns_names=args.dns, ttl=ttl)
    except (InvalidSpiffeId, ValueError) as err:
        raise UsageError(str(err)) from None
    files = _write_identity(args.out, identity, ca.bundle_pem)
    print(f"issued {identity.spiffe_id}, valid until {identity.not_after:%Y-%m-%d %H:%M} UTC:")
    for path in (files.cert, files.key, files.bundle):
        print(f"  {path}")
    return 0


def run_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.identity import xds_auth
    from controlplane.translate.bootstrap import bootstrap_files

    host, port = _host_port(args.xds_address)
    ttl = _hours(args.ttl_hours)
    ca = _ca(args.state_dir, args.trust_domain)
    if args.gateway:
        ns, name = _ns_name("Gateway", args.gateway).namespace, _ns_name("Gateway", args.gateway).name
        identity_id = xds_auth.proxy_identity_for_gateway(ca.trust_domain, ns, name)
        node_id = xds_auth.node_id_for_gateway(ns, name)
    else:
        key = _ns_name("ServiceAccount", args.workload)
        identity_id = spiffe_id(ca.trust_domain, key.namespace, key.name)
        node_id = xds_auth.node_id_for_workload(key.namespace, key.name)
    out = Path(args.out)
    role = node_id.split("~", 1)[0]
    _write_identity(args.out, xds_auth.issue_proxy_identity(ca, identity_id, role=role, ttl=ttl), ca.bundle_pem)
    bootstrap = bootstrap_files(out, node_id=node_id, node_cluster=role, xds_host=host, xds_port=port,
                                admin_port=args.admin_port, trust_domain=ca.trust_domain, delta=args.delta)
    _write_files(args.out, bootstrap.files)
    print(f"wrote {bootstrap.bootstrap_path} for node {node_id} (identity {identity_id})")
    print(bootstrap.files[bootstrap.run_path].decode().strip())
    return 0


def run_capture_rules(args: argparse.Namespace) -> int:
    import shlex

    from controlplane.translate import capture

    def items(value: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())

    try:
        settings = capture.CaptureSettings(
            proxy_uid=args.proxy_uid, proxy_gid=args.proxy_gid,
            inbound_ports=items(args.inbound_ports),
            excluded_inbound_ports=tuple(int(p) for p in items(args.exclude_inbound_ports)),
            outbound_cidrs=items(args.outbound_ip_ranges), excluded_outbound_cidrs=items(args.exclude_outbound_ip_ranges),
            excluded_outbound_ports=tuple(int(p) for p in items(args.exclude_outbound_ports)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "restore":
        print(capture.restore_script(settings), end="")
    else:
        print("\n".join(shlex.join(line) for line in capture.commands(settings)))
    return 0


def _write_files(out: str, files: Mapping[Path, bytes]) -> None:
    """Each file in one rename, in the given order (the SDS files before the bootstrap that names them)."""
    from controlplane.identity.files import atomic_write

    try:
        for path, content in files.items():
            atomic_write(path, content)
    except OSError as err:
        raise CommandFailed(_os_error("--out", out, err)) from None


MAX_TTL_HOURS = 8760.0  # a year; anything longer is a mistake for a workload certificate


def _hours(value: float):
    """--ttl-hours as a timedelta: finite, more than zero, at most MAX_TTL_HOURS."""
    import math
    from datetime import timedelta

    if not math.isfinite(value) or value <= 0 or value > MAX_TTL_HOURS:
        raise UsageError(f"--ttl-hours must be more than 0 and at most {MAX_TTL_HOURS:g}, not {value:g}")
    return timedelta(hours=value)


def _host_port(value: str) -> tuple[str, int]:
    from controlplane.addresses import split_host_port

    try:
        return split_host_port(value)
    except ValueError as err:
        raise UsageError(str(err)) from None


# --- shared -----------------------------------------------------------------------------------------------


def _load_graph(args: argparse.Namespace) -> AuthorizationGraph:
    source = DirectorySource(*_existing(args.config))
    change = source.load()
    for problem in (p for ps in change.problems.values() for p in ps):
        print(f"warning: skipped: {problem}", file=sys.stderr)
    graph = AuthorizationGraph(trust_domain=args.trust_domain, controller_names=_controllers(args))
    graph.apply(change)
    return graph


def _existing(paths: list[str]) -> list[Path]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    return [Path(p) for p in paths]


def _limits(args: argparse.Namespace):
    from controlplane.sources.bounded_load import Limits

    return Limits(max_file_bytes=args.max_file_bytes, max_document_bytes=args.max_document_bytes)


def _limit_options(p: argparse.ArgumentParser) -> None:
    from controlplane.sources.bounded_load import Limits

    p.add_argument("--max-file-bytes", type=int, default=Limits.max_file_bytes, metavar="N",
                   help=f"a larger file is refused and reported (default {Limits.max_file_bytes})")
    p.add_argument("--max-document-bytes", type=int, default=Limits.max_document_bytes, metavar="N",
                   help=f"a file with a larger document is refused and reported (default {Limits.max_document_bytes})")


def _ns_name(kind: str, value: str) -> ResourceKey:
    namespace, sep, name = value.partition("/")
    if not sep:
        namespace, name = "default", value
    return ResourceKey(kind, namespace, name)


def _xds_limits(args: argparse.Namespace):
    from controlplane.xds.limits import StreamLimits

    if min(args.xds_max_streams_per_identity, args.xds_max_names_per_type) < 1:
        raise UsageError("--xds-max-* values must be at least 1")
    return StreamLimits(streams_per_identity=args.xds_max_streams_per_identity,
                        streams_per_connection=args.xds_max_streams_per_identity,
                        names_per_type=args.xds_max_names_per_type, names_per_request=args.xds_max_names_per_type)


def _controllers(args: argparse.Namespace) -> tuple[str, ...]:
    """GatewayClass controllerNames this control plane answers for: the flags, else $AGENTIC_CP_GATEWAY_CLASS_CONTROLLER,
    else upstream's, so that upstream manifests work unchanged."""
    import os

    from controlplane.api.gateway import OUR_CONTROLLER

    if args.controller_name:
        return tuple(args.controller_name)
    return (os.environ.get("AGENTIC_CP_GATEWAY_CLASS_CONTROLLER") or OUR_CONTROLLER,)


def _regex_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-regex-program-size", type=_positive_int, metavar="N",
                   help="refuse regexes whose RE2 program is larger (default "
                        f"{regex.ENVOY_MAX_PROGRAM_SIZE}, Envoy's re2.max_program_size.error_level); "
                        "raise it only with Envoy's runtime value")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _controller_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller-name", action="append", default=[], metavar="NAME",
                   help="a GatewayClass controllerName to manage (repeatable; default: upstream's)")


def _parser() -> argparse.ArgumentParser:
    from controlplane.xds.limits import DEFAULT_LIMITS

    parser = argparse.ArgumentParser(prog="agentic-cp", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("validate", help="check resources; one line per problem, exit 1 if any")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    _controller_option(p)
    _regex_option(p)
    _limit_options(p)
    p.set_defaults(run=run_validate)

    p = sub.add_parser("explain", help="may SOURCE make this request, and which rule decides?")
    p.add_argument("--config", action="append", required=True, metavar="PATH")
    p.add_argument("--source", required=True, help="a SPIFFE ID or NAMESPACE/SERVICEACCOUNT ('none': no cert)")
    p.add_argument("--gateway", metavar="NS/NAME")
    p.add_argument("--backend", metavar="NS/NAME", help="an XBackend: evaluate its policies alone")
    p.add_argument("--port", type=int)
    p.add_argument("--path")
    p.add_argument("--host", default="")
    p.add_argument("--http-method")
    p.add_argument("--mcp-method")
    p.add_argument("--tool")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    _controller_option(p)
    p.set_defaults(run=run_explain)

    p = sub.add_parser("graph", help="print the authorization graph")
    p.add_argument("--config", action="append", required=True, metavar="PATH")
    p.add_argument("--format", choices=("json", "dot"), default="json")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    _controller_option(p)
    p.set_defaults(run=run_graph)

    p = sub.add_parser("serve", help="serve xDS to Envoy from a directory or a Kubernetes cluster")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", action="append", metavar="PATH")
    where.add_argument("--kubeconfig", metavar="FILE")
    where.add_argument("--in-cluster", action="store_true")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--xds-address", default="127.0.0.1:15010", metavar="HOST:PORT")
    p.add_argument("--admin-address", default="127.0.0.1:15014", metavar="HOST:PORT")
    p.add_argument("--xds-max-streams-per-identity", type=int, default=DEFAULT_LIMITS.streams_per_identity,
                   metavar="N", help="open ADS streams one client certificate may hold (also per connection)")
    p.add_argument("--xds-max-names-per-type", type=int, default=DEFAULT_LIMITS.names_per_type, metavar="N",
                   help="resource names one ADS stream may subscribe to per type (and carry per request)")
    p.add_argument("--state-dir", required=True, help="keeps the CA and other state")
    p.add_argument("--trust-domain", help=f"for a new state dir (default {DEFAULT_TRUST_DOMAIN})")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _regex_option(p)
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="text (control characters escaped: one record, one line) or JSON lines")
    p.add_argument("--admin-token-file", metavar="FILE",
                   help="/debug/* on the admin address requires 'Authorization: Bearer <the file's content>'; "
                        "without it, /debug/* answers loopback clients only")
    p.add_argument("--namespace", help="the control plane's namespace (default: $POD_NAMESPACE, agentic-system)")
    p.add_argument("--service-account",
                   help="the control plane's ServiceAccount, part of the SPIFFE ID the xDS server presents and "
                        "provisioned proxies pin (default: $POD_SERVICE_ACCOUNT, agentic-cp)")
    p.add_argument("--ca-secret", default="agentic-cp-ca", metavar="NAME",
                   help="with --in-cluster/--kubeconfig: the Secret in --namespace holding the CA every replica "
                        "shares, created if missing (default agentic-cp-ca; '' keeps the CA in --state-dir)")
    p.add_argument("--proxy-image", help="provision an Envoy Deployment per Gateway with this image")
    p.add_argument("--xds-service", default="agentic-cp-xds.agentic-system.svc:15010", metavar="HOST:PORT",
                   help="the xDS address provisioned gateways use ($AGENTIC_CP_XDS_SERVICE wins)")
    p.add_argument("--remote-cluster", action="append", default=[], metavar="NAME=KUBECONFIG",
                   help="(not supported yet) another cluster to watch")
    _controller_option(p)
    _limit_options(p)
    p.add_argument("--settle-ms", type=int, default=1000, metavar="MS",
                   help="with --config: an object missing from a file that still exists is removed only once "
                        "the file has stayed whole and unchanged this long (default 1000)")
    p.set_defaults(run=run_serve)

    p = sub.add_parser("identity", help="workload identities from the control plane's CA")
    isub = p.add_subparsers(metavar="ACTION")
    q = isub.add_parser("issue", help="write cert.pem, key.pem and bundle.pem for a SPIFFE ID")
    q.add_argument("--state-dir", required=True)
    q.add_argument("--spiffe-id", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--dns", action="append", default=[], help="an extra DNS SAN (repeatable)")
    q.add_argument("--ttl-hours", type=float, default=24.0)
    q.add_argument("--trust-domain", help="for a new state dir (default cluster.local)")
    q.set_defaults(run=run_identity_issue)

    p = sub.add_parser("bootstrap", help="write an Envoy bootstrap and its xDS credentials")
    p.add_argument("--xds-address", required=True, metavar="HOST:PORT")
    p.add_argument("--state-dir", required=True)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--gateway", metavar="NS/NAME")
    who.add_argument("--workload", metavar="NS/SERVICEACCOUNT")
    p.add_argument("--out", required=True)
    p.add_argument("--admin-port", type=int, default=15000)
    p.add_argument("--ttl-hours", type=float, default=24.0)
    p.add_argument("--trust-domain", help="for a new state dir (default cluster.local)")
    p.add_argument("--delta", action="store_true", help="incremental ADS (api_type DELTA_GRPC) instead of SotW")
    p.set_defaults(run=run_bootstrap)
    p = sub.add_parser("capture-rules", help="print the iptables rules that capture a pod's TCP into its sidecar")
    p.add_argument("--format", choices=("restore", "commands"), default="restore",
                   help="iptables-restore input (default) or one iptables command per rule")
    p.add_argument("--proxy-uid", type=int, default=1337, help="the sidecar's UID, never captured (default 1337)")
    p.add_argument("--proxy-gid", type=int, default=1337, help="the sidecar's GID, never captured (default 1337)")
    p.add_argument("--inbound-ports", default="*", metavar="PORTS", help="captured inbound: '*' (default) or P,P")
    p.add_argument("--exclude-inbound-ports", default="15006,15020,15021,15090", metavar="PORTS")
    p.add_argument("--outbound-ip-ranges", default="*", metavar="CIDRS", help="captured outbound: '*' or CIDR,CIDR")
    p.add_argument("--exclude-outbound-ip-ranges", default="", metavar="CIDRS")
    p.add_argument("--exclude-outbound-ports", default="", metavar="PORTS")
    p.set_defaults(run=run_capture_rules)
    return parser


if __name__ == "__main__":
    sys.exit(main())
