"""`agentic-cp`: validate resources, explain decisions, draw the graph, serve xDS, write bootstraps."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from controlplane.api import regex
from controlplane.api.base import Problem
from controlplane.commands import analyze as analyze_command
from controlplane.commands import audit as audit_command
from controlplane.commands import explain as explain_command
from controlplane.commands import guardrail as guardrail_command
from controlplane.commands import identity_request as identity_request_command
from controlplane.commands import inject as inject_command
from controlplane.commands import proxies as proxies_command
from controlplane.commands import translate as translate_command
from controlplane.commands.common import CommandFailed, UsageError
from controlplane.commands.common import controller_option as _controller_option
from controlplane.commands.common import controllers as _controllers
from controlplane.commands.common import existing as _existing
from controlplane.commands.common import load_graph as _load_graph
from controlplane.commands.common import ns_name as _ns_name
from controlplane.graph import export
from controlplane.graph.admission import cel_problem
from controlplane.graph.model import AuthorizationGraph
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
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command, its failures as one line each; the traceback only with --log-level debug."""
    try:
        return args.run(args)
    except UsageError as err:
        print(f"agentic-cp: {err}", file=sys.stderr)
        return 2
    except CommandFailed as err:
        print(f"agentic-cp: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _quiet_stdout()  # the reader (e.g. `| head`) has what it wanted
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if getattr(args, "log_level", None) == "debug":
            raise
        print(f"agentic-cp: {args.command} failed: {type(err).__name__}: {err} "
              "(rerun with --log-level debug for the traceback)", file=sys.stderr)
        return 1


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again (Python's recipe)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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
    if args.kubeconfig:
        check_kubeconfig_flags(args)
    if args.startup_timeout < 0:
        raise UsageError("--startup-timeout must be 0 (retry forever) or more seconds")
    _check_bindable("--xds-address", args.xds_address)
    _check_bindable("--admin-address", args.admin_address)
    settings = Settings(state_dir=Path(args.state_dir), trust_domain=_trust_domain(args.state_dir, args.trust_domain),
                        xds_address=args.xds_address, admin_address=args.admin_address,
                        controller_names=_controllers(args), admin_token=_admin_token(args.admin_token_file),
                        xds_limits=_xds_limits(args), audit_log=_audit_log(args),
                        audit_log_max_bytes=args.audit_log_max_mb * 1024 * 1024,
                        otel_collector=_otel_collector(args.otel_collector))
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


def _otel_collector(text: str | None):
    """--otel-collector HOST:PORT as the proxies' OTLP/gRPC collector; None (off) without the flag."""
    from controlplane.translate.context import OtelCollector

    if text is None:
        return None
    try:
        return OtelCollector.parse(text)
    except ValueError as err:
        raise UsageError(f"--otel-collector: {err}") from None


def _audit_log(args: argparse.Namespace) -> Path:
    """The audit file: --audit-log, else STATE_DIR/audit.jsonl; its folder must be writable now, not at the
    first request."""
    path = Path(args.audit_log) if args.audit_log else Path(args.state_dir) / "audit.jsonl"
    if path.is_dir():
        raise UsageError(f"--audit-log {path}: is a directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except OSError as err:
        raise CommandFailed(_os_error("--audit-log", str(path), err)) from None
    return path
def check_kubeconfig_flags(args: argparse.Namespace) -> None:
    """--kubeconfig/--context that cannot name a cluster: one line and exit 2, before anything starts."""
    from controlplane.kube.client import KubeconfigError, check_kubeconfig

    try:
        check_kubeconfig(args.kubeconfig, args.context)
    except KubeconfigError as err:
        raise UsageError(str(err)) from None


def _check_bindable(flag: str, address: str) -> None:
    """Fail fast, in one line, when another process already listens where serve would."""
    import socket

    host, port = _host_port(address)
    if port == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            probe.bind(sockaddr)
    except OSError as err:
        raise CommandFailed(f"{flag} {address}: cannot listen there ({err.strerror or err}); stop the process "
                            "that holds it or choose another address") from None


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
    from controlplane.kube.startup import StartupRetry

    namespace, service_account = _control_plane_account(args)
    return ClusterOptions(in_cluster=args.in_cluster, kubeconfig=args.kubeconfig, context=args.context,
                          namespace=namespace, service_account=service_account, ca_secret=args.ca_secret,
                          proxy_image=None if args.no_provision else args.proxy_image,
                          xds_service=os.environ.get("AGENTIC_CP_XDS_SERVICE") or args.xds_service,
                          startup=StartupRetry(give_up_after=args.startup_timeout or None))


async def _kubernetes_control_plane(args: argparse.Namespace, settings):
    from controlplane.identity.ca import CaStateError
    from controlplane.kube.serve import cluster_control_plane
    from controlplane.kube.startup import ApiUnreachable

    try:
        return await cluster_control_plane(_cluster_options(args), settings)
    except CaStateError as err:
        raise UsageError(str(err)) from None
    except ApiUnreachable as err:
        raise CommandFailed(str(err)) from None


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
    if args.gateway or args.egress:
        key = _ns_name("Gateway", args.gateway or args.egress)
        identity_id = xds_auth.proxy_identity_for_gateway(ca.trust_domain, key.namespace, key.name)
        node_id = (xds_auth.node_id_for_gateway if args.gateway else xds_auth.node_id_for_egress)(key.namespace,
                                                                                                 key.name)
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


def _limits(args: argparse.Namespace):
    from controlplane.sources.bounded_load import Limits

    return Limits(max_file_bytes=args.max_file_bytes, max_document_bytes=args.max_document_bytes)


def _limit_options(p: argparse.ArgumentParser) -> None:
    from controlplane.sources.bounded_load import Limits

    p.add_argument("--max-file-bytes", type=int, default=Limits.max_file_bytes, metavar="N",
                   help=f"a larger file is refused and reported (default {Limits.max_file_bytes})")
    p.add_argument("--max-document-bytes", type=int, default=Limits.max_document_bytes, metavar="N",
                   help=f"a file with a larger document is refused and reported (default {Limits.max_document_bytes})")


def _xds_limits(args: argparse.Namespace):
    from controlplane.xds.limits import StreamLimits

    if min(args.xds_max_streams_per_identity, args.xds_max_names_per_type) < 1:
        raise UsageError("--xds-max-* values must be at least 1")
    return StreamLimits(streams_per_identity=args.xds_max_streams_per_identity,
                        streams_per_connection=args.xds_max_streams_per_identity,
                        names_per_type=args.xds_max_names_per_type, names_per_request=args.xds_max_names_per_type)


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


def _parser() -> argparse.ArgumentParser:
    from controlplane.xds.limits import DEFAULT_LIMITS

    parser = argparse.ArgumentParser(prog="agentic-cp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(metavar="COMMAND", dest="command", help="run `agentic-cp COMMAND -h` for its flags")

    p = sub.add_parser("validate", help="check resources; one line per problem, exit 1 if any")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders of resources")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="the mesh's trust domain")
    _controller_option(p)
    _regex_option(p)
    _limit_options(p)
    p.set_defaults(run=run_validate)

    analyze_command.add_parser(sub)
    explain_command.add_parser(sub)
    translate_command.add_parser(sub)
    proxies_command.add_parsers(sub)
    audit_command.add_parser(sub)
    guardrail_command.add_parser(sub)

    p = sub.add_parser("graph", help="print the authorization graph")
    p.add_argument("--config", action="append", required=True, metavar="PATH",
                   help="a file or folder of resources (repeatable)")
    p.add_argument("--format", choices=("json", "dot"), default="json", help="JSON, or Graphviz dot")
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="the mesh's trust domain")
    _controller_option(p)
    p.set_defaults(run=run_graph)

    p = sub.add_parser("serve", help="serve xDS to Envoy from a directory or a Kubernetes cluster")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", action="append", metavar="PATH",
                       help="serve the resources of these files or folders (repeatable), watching them")
    where.add_argument("--kubeconfig", metavar="FILE", help="serve the resources of the cluster this file names")
    where.add_argument("--in-cluster", action="store_true",
                       help="serve the resources of the cluster this pod runs in (its ServiceAccount)")
    p.add_argument("--context", help="kubeconfig context (default: the file's current context)")
    p.add_argument("--xds-address", default="127.0.0.1:15010", metavar="HOST:PORT",
                   help="where the ADS server listens (mTLS)")
    p.add_argument("--admin-address", default="127.0.0.1:15014", metavar="HOST:PORT",
                   help="where /healthz, /readyz, /metrics and /debug/* listen")
    p.add_argument("--xds-max-streams-per-identity", type=int, default=DEFAULT_LIMITS.streams_per_identity,
                   metavar="N", help="open ADS streams one client certificate may hold (also per connection)")
    p.add_argument("--xds-max-names-per-type", type=int, default=DEFAULT_LIMITS.names_per_type, metavar="N",
                   help="resource names one ADS stream may subscribe to per type (and carry per request)")
    p.add_argument("--state-dir", required=True, help="keeps the CA and other state")
    p.add_argument("--trust-domain", help=f"for a new state dir (default {DEFAULT_TRUST_DOMAIN})")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                   help="debug also prints the traceback of a failure")
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
    p.add_argument("--proxy-image", default=PINNED_PROXY_IMAGE, metavar="IMAGE",
                   help="with --in-cluster/--kubeconfig: the image of the Envoy Deployment provisioned per Gateway "
                        f"(default {PINNED_PROXY_IMAGE}, the Envoy the tests run and the chart pins)")
    p.add_argument("--no-provision", action="store_true",
                   help="provision no gateway proxies (you run them yourself, e.g. with `agentic-cp bootstrap`)")
    p.add_argument("--startup-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="with --in-cluster/--kubeconfig: how long start-up keeps retrying an API server that "
                        "is not reachable yet (refused, timeout, 429, 5xx; backoff from 1 s doubling to 30 s, "
                        "each attempt logged), then exit 1; 0 retries forever. 401/403 and a broken kubeconfig "
                        "fail at once (default 300)")
    p.add_argument("--xds-service", default="agentic-cp-xds.agentic-system.svc:15010", metavar="HOST:PORT",
                   help="the xDS address provisioned gateways use ($AGENTIC_CP_XDS_SERVICE wins)")
    p.add_argument("--remote-cluster", action="append", default=[], metavar="NAME=KUBECONFIG",
                   help="(not supported yet) another cluster to watch")
    _controller_option(p)
    _limit_options(p)
    p.add_argument("--audit-log", metavar="FILE",
                   help="where the audit records proxies stream (gRPC access log) are written as JSON lines "
                        "(default STATE_DIR/audit.jsonl)")
    p.add_argument("--audit-log-max-mb", type=_positive_int, default=64, metavar="MB",
                   help="rotate the audit log at this size; FILE.1..FILE.3 are kept")
    p.add_argument("--otel-collector", metavar="HOST:PORT",
                   help="enforcing proxies also trace each request and send its audit record to this OTLP/gRPC "
                        "collector (Envoy's OpenTelemetry tracer and access logger); off without it. Turning it "
                        "on or off updates the Listeners once (they drain)")
    p.add_argument("--settle-ms", type=int, default=1000, metavar="MS",
                   help="with --config: an object missing from a file that still exists is removed only once "
                        "the file has stayed whole and unchanged this long (default 1000)")
    p.set_defaults(run=run_serve)

    p = sub.add_parser("identity", help="workload identities from the control plane's CA")
    isub = p.add_subparsers(metavar="ACTION", help="run `agentic-cp identity ACTION -h` for its flags")
    p.set_defaults(run=_help_of(p))
    q = isub.add_parser("issue", help="write cert.pem, key.pem and bundle.pem for a SPIFFE ID")
    q.add_argument("--state-dir", required=True, help="keeps the CA (DIR/ca, created on first use)")
    q.add_argument("--spiffe-id", required=True, help="spiffe://TRUST-DOMAIN/ns/NS/sa/NAME")
    q.add_argument("--out", required=True, help="the folder to write the three files to")
    q.add_argument("--dns", action="append", default=[], help="an extra DNS SAN (repeatable)")
    q.add_argument("--ttl-hours", type=float, default=24.0, help=f"validity (at most {MAX_TTL_HOURS:g})")
    q.add_argument("--trust-domain", help="for a new state dir (default cluster.local)")
    q.set_defaults(run=run_identity_issue)
    identity_request_command.add_parser(isub)

    p = sub.add_parser("bootstrap", help="write an Envoy bootstrap and its xDS credentials")
    p.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="where Envoy reaches serve's ADS")
    p.add_argument("--state-dir", required=True, help="the control plane's state dir (its CA signs the proxy)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--gateway", metavar="NS/NAME", help="the Gateway this Envoy serves")
    who.add_argument("--workload", metavar="NS/SERVICEACCOUNT", help="the workload this Envoy serves")
    who.add_argument("--egress", metavar="NS/NAME", help="the egress Gateway this Envoy serves (node egress~NS~NAME)")
    p.add_argument("--out", required=True, help="the folder to write the bootstrap and credentials to")
    p.add_argument("--admin-port", type=int, default=15000, help="Envoy's admin port (loopback)")
    p.add_argument("--ttl-hours", type=float, default=24.0,
                   help=f"validity of the proxy's xDS certificate (at most {MAX_TTL_HOURS:g})")
    p.add_argument("--trust-domain", help="for a new state dir (default cluster.local)")
    p.add_argument("--delta", action="store_true", help="incremental ADS (api_type DELTA_GRPC) instead of SotW")
    p.set_defaults(run=run_bootstrap)
    p = sub.add_parser("capture-rules", help="print the iptables rules that capture a pod's TCP into its sidecar")
    p.add_argument("--format", choices=("restore", "commands"), default="restore",
                   help="iptables-restore input, or one iptables command per rule")
    p.add_argument("--proxy-uid", type=int, default=1337, help="the sidecar's UID, never captured")
    p.add_argument("--proxy-gid", type=int, default=1337, help="the sidecar's GID, never captured")
    p.add_argument("--inbound-ports", default="*", metavar="PORTS", help="captured inbound: '*' or P,P")
    p.add_argument("--exclude-inbound-ports", default="15006,15020,15021,15090", metavar="PORTS",
                   help="inbound ports never captured")
    p.add_argument("--outbound-ip-ranges", default="*", metavar="CIDRS", help="captured outbound: '*' or CIDR,CIDR")
    p.add_argument("--exclude-outbound-ip-ranges", default="", metavar="CIDRS",
                   help="outbound destinations never captured")
    p.add_argument("--exclude-outbound-ports", default="", metavar="PORTS", help="outbound ports never captured")
    p.set_defaults(run=run_capture_rules)
    inject_command.add_parsers(sub)
    _finish(parser)
    return parser


LOG_LEVELS = ("debug", "info", "warning", "error")
PINNED_PROXY_IMAGE = "envoyproxy/envoy:v1.40.0"  # helm/agentic-cp/values.yaml proxy.image pins the same


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentic-cp")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _help_of(parser: argparse.ArgumentParser):
    """A run function for a command group without its action: its own help, exit 2."""
    def run(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return run


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is one worth showing and the help does not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _leaf_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _leaf_parsers(child)


def _finish(parser: argparse.ArgumentParser) -> None:
    """Every parser shows defaults; every command takes --log-level (debug: tracebacks)."""
    for each in _leaf_parsers(parser):
        each.formatter_class = _DefaultsFormatter
        if each is not parser and not any("--log-level" in a.option_strings for a in each._actions):
            each.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                              help="debug also prints the traceback of a failure")


if __name__ == "__main__":
    sys.exit(main())
