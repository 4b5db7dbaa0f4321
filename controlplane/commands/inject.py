"""`agentic-cp inject -f FILE|-` (as `istioctl kube-inject`) and `agentic-cp sidecar-bootstrap` (what an
injected pod's init container runs).

`inject` reads multi-document YAML, injects every workload that does not opt out (the namespace's label
is not known offline, so only the pod's own `agentic-cp.dev/inject: "false"` keeps it out), and prints
every document, the others unchanged. All or nothing: one bad document is one line on stderr and
nothing printed, so a pipe into `kubectl apply -f -` never applies half a file.

`sidecar-bootstrap` writes the Envoy bootstrap of an injected sidecar at pod start, from the pod's
namespace and ServiceAccount (downward API), pointing at credentials already mounted (no CA needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from controlplane.addresses import split_host_port
from controlplane.commands.common import CommandFailed, UsageError, ns_name
from controlplane.identity.files import atomic_write
from controlplane.translate.injection import InjectionError, MeshSettings, inject_object, pod_template_of

MAX_INPUT_BYTES = 16 * 1024 * 1024
DEFAULTS = MeshSettings()


def add_parsers(sub) -> None:
    p = sub.add_parser("inject", help="print manifests with the Envoy sidecar injected (as istioctl kube-inject)",
                       description=__doc__)
    p.add_argument("-f", "--filename", required=True, metavar="FILE", help="the manifests; '-' reads stdin")
    p.add_argument("--xds-address", default=DEFAULTS.xds_address, metavar="HOST:PORT",
                   help="where the sidecars reach the control plane")
    p.add_argument("--trust-domain", default=DEFAULTS.trust_domain, help="the mesh's trust domain")
    p.add_argument("--proxy-image", default=DEFAULTS.proxy_image, help="the sidecar's Envoy image")
    p.add_argument("--init-image", default=DEFAULTS.init_image,
                   help="the control plane's image, run by the init containers (bootstrap, iptables)")
    p.add_argument("--credentials-secret-prefix", default=DEFAULTS.credentials_secret_prefix,
                   help="the xDS credential Secret is this prefix + the pod's ServiceAccount")
    p.set_defaults(run=run_inject)

    q = sub.add_parser("sidecar-bootstrap", help="write an injected sidecar's Envoy bootstrap (its init container)")
    q.add_argument("--workload", required=True, metavar="NS/SERVICEACCOUNT", help="the pod's namespace and ServiceAccount")
    q.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="where Envoy reaches serve's ADS")
    q.add_argument("--credentials-dir", required=True, help="where cert.pem, key.pem and bundle.pem are mounted")
    q.add_argument("--out", required=True, help="the folder to write envoy.yaml and the SDS files to")
    q.add_argument("--trust-domain", default=DEFAULTS.trust_domain, help="the mesh's trust domain")
    q.add_argument("--control-plane-id", default="", help="the control plane's SPIFFE ID (default: the trust domain's)")
    q.add_argument("--admin-port", type=int, default=15000, help="Envoy's admin port (loopback)")
    q.add_argument("--health-port", type=int, default=15021, help="the readiness port (/healthz/ready)")
    q.set_defaults(run=run_sidecar_bootstrap)


def _read(filename: str) -> str:
    try:
        if filename == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(filename, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as err:
        raise CommandFailed(f"cannot read -f {filename}: {err.strerror or err}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise CommandFailed(f"-f {filename}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CommandFailed(f"-f {filename}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _documents(filename: str) -> list:
    try:
        return [doc for doc in yaml.safe_load_all(_read(filename)) if doc is not None]
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f":{where.line + 1}:{where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CommandFailed(f"-f {filename}{at}: not YAML: {problem}") from None


def _label(doc) -> str:
    if not isinstance(doc, dict):
        return "document"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
    return f"{doc.get('kind')!s:.60} {name:.120}"


def run_inject(args: argparse.Namespace) -> int:
    try:
        split_host_port(args.xds_address)
    except ValueError as err:
        raise UsageError(f"--xds-address {args.xds_address}: {err}") from None
    mesh = MeshSettings(xds_address=args.xds_address, trust_domain=args.trust_domain, proxy_image=args.proxy_image,
                        init_image=args.init_image, credentials_secret_prefix=args.credentials_secret_prefix)
    out = []
    for index, doc in enumerate(_documents(args.filename)):
        try:
            injected, why = inject_object(doc, mesh)
        except InjectionError as err:
            raise CommandFailed(f"{args.filename}:{index}: {_label(doc)}: {err}") from None
        if injected is doc and isinstance(doc, dict) and pod_template_of(doc) is not None:
            print(f"{args.filename}:{index}: {_label(doc)}: not injected: {why}", file=sys.stderr)
        out.append(injected)
    print(yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False), end="")
    return 0


def run_sidecar_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.identity.xds_auth import node_id_for_workload
    from controlplane.translate.bootstrap import bootstrap_files

    try:
        host, port = split_host_port(args.xds_address)
    except ValueError as err:
        raise UsageError(f"--xds-address {args.xds_address}: {err}") from None
    key = ns_name("ServiceAccount", args.workload)
    if not key.namespace or not key.name or "~" in args.workload:
        raise UsageError(f"--workload {args.workload!r}: give NAMESPACE/SERVICEACCOUNT")
    for flag, value in (("--admin-port", args.admin_port), ("--health-port", args.health_port)):
        if not 0 < value < 65536:
            raise UsageError(f"{flag} {value}: not a TCP port")
    node_id = node_id_for_workload(key.namespace, key.name)
    files = bootstrap_files(Path(args.out), credentials_dir=Path(args.credentials_dir), sds_dir=Path(args.out),
                            node_id=node_id, node_cluster="sidecar", xds_host=host, xds_port=port,
                            admin_port=args.admin_port, health_port=args.health_port,
                            trust_domain=args.trust_domain, control_plane_spiffe_id=args.control_plane_id or None)
    try:
        for path, content in files.files.items():  # the SDS files before the bootstrap that names them
            atomic_write(path, content)
    except OSError as err:
        raise CommandFailed(f"cannot write --out {args.out}: {err.strerror or err}") from None
    print(f"wrote {files.bootstrap_path} for node {node_id}")
    return 0

