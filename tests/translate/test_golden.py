"""Golden translations as one table: `testdata/in/<case>.yaml` -> `testdata/out/<case>.<type>.yaml`.

Why a table: each Envoy feature and each proxy role gets a case, and a reviewer reads a change of
translation as a diff of small per-type files. `pytest --update-golden tests/translate/test_golden.py`
rewrites the outputs; read the diff before committing it. Without the flag a missing output, an output
nobody produces any more and an output without an input all fail. Each case's committed outputs are
also loaded into a static bootstrap and checked by `envoy --mode validate`.

An input is a YAML stream. Its first document may be the case's header:

    case:
      gateway: NAMESPACE/NAME      # the proxy to translate for: a Gateway's (gateway role),
      workload: NAMESPACE/SA       #   or a workload's sidecar (sidecar role); one of the two is required
      include: [PATH, ...]         # files or folders loaded first, relative to the repo root
      requires: PATH               # skip, saying why, when this path (e.g. under ../shared) is absent
      otel_collector: HOST:PORT    # as serve --otel-collector gives it (features/otel.py)

and the other documents are resources applied on top. Translation is `agentic-cp translate`'s (`offline_resources`), with no
secrets: the identity room supplies them at run time, so the SDS references are in the listeners' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.commands.translate import TYPE_NAMES, as_documents, offline_resources
from controlplane.graph.model import AuthorizationGraph
from controlplane.identity import sds
from controlplane.identity.ca import CertificateAuthority
from controlplane.sources.directory import DirectorySource
from controlplane.translate.context import OtelCollector
from controlplane.xds import resources as types
from controlplane.xds.resources import Resource
from tests.conftest import ROOT
from tests.translate.translate_static import envoy_validate, placeholder_credentials, static_bootstrap

TESTDATA = Path(__file__).parent / "testdata"
INPUTS, OUTPUTS = TESTDATA / "in", TESTDATA / "out"
OUTPUT_KINDS = TYPE_NAMES
TYPE_OF_KIND = {kind: type_url for type_url, kind in OUTPUT_KINDS.items()}


def translate(graph: AuthorizationGraph, proxy: ResourceKey,
              otel_collector: OtelCollector | None = None) -> list[Resource]:
    """What `agentic-cp translate` prints: the one offline translation entry point (a Gateway or a sidecar)."""
    return offline_resources(graph, proxy, otel_collector=otel_collector)


@dataclass
class Case:
    name: str
    gateway: ResourceKey
    include: list[Path] = field(default_factory=list)
    requires: Path | None = None
    documents: list[dict] = field(default_factory=list)
    otel_collector: OtelCollector | None = None

    @classmethod
    def read(cls, path: Path) -> Case:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        header = docs.pop(0)["case"] if docs and "case" in docs[0] else {}
        kind, ref = ("ServiceAccount", header["workload"]) if "workload" in header else ("Gateway", header["gateway"])
        namespace, _, name = ref.partition("/")
        return cls(name=path.stem, gateway=ResourceKey(kind, namespace, name),
                   include=[(ROOT / p).resolve() for p in header.get("include", [])],
                   requires=(ROOT / header["requires"]).resolve() if "requires" in header else None,
                   documents=docs,
                   otel_collector=OtelCollector.parse(header["otel_collector"]) if "otel_collector" in header else None)

    def graph(self) -> AuthorizationGraph:
        if self.requires is not None and not self.requires.exists():
            pytest.skip(f"case {self.name} reads {self.requires}, which is absent (CI keeps ../shared beside "
                        "the clone)")
        graph = AuthorizationGraph()
        if self.include:
            graph.apply(DirectorySource(*self.include).load())
        graph.apply(ChangeSet(upserts=[parse_object(doc) for doc in self.documents]))
        return graph


def render(resources: list[Resource]) -> dict[str, str]:
    """One YAML stream per resource type, in translation order: `{name, resource}` per document."""
    documents = as_documents(resources)
    return {kind: yaml.safe_dump_all(items, sort_keys=True, width=120) for kind, items in documents.items()}


def case_names() -> list[str]:
    return sorted(path.stem for path in INPUTS.glob("*.yaml"))


def out_path(case: str, kind: str) -> Path:
    return OUTPUTS / f"{case}.{kind}.yaml"


def existing_outputs(case: str) -> dict[str, Path]:
    return {path.name.removeprefix(f"{case}.").removesuffix(".yaml"): path
            for path in OUTPUTS.glob(f"{case}.*.yaml")}


def write_outputs(case: str, rendered: dict[str, str]) -> None:
    for kind, path in existing_outputs(case).items():
        if kind not in rendered:
            path.unlink()
    for kind, text in rendered.items():
        out_path(case, kind).write_text(text)


def differences(case: str, rendered: dict[str, str]) -> list[str]:
    on_disk = existing_outputs(case)
    problems = [f"{out_path(case, kind).name} is missing" for kind in sorted(set(rendered) - set(on_disk))]
    problems += [f"{on_disk[kind].name} is no longer produced" for kind in sorted(set(on_disk) - set(rendered))]
    problems += [f"{on_disk[kind].name} differs from the translation" for kind in sorted(set(rendered) & set(on_disk))
                 if on_disk[kind].read_text() != rendered[kind]]
    return problems


@pytest.mark.parametrize("case_name", case_names())
def test_translation_matches_golden(case_name, request):
    case = Case.read(INPUTS / f"{case_name}.yaml")
    rendered = render(translate(case.graph(), case.gateway, case.otel_collector))
    assert rendered, f"case {case_name}: {case.gateway.ref} translated to nothing"
    if request.config.getoption("--update-golden"):
        write_outputs(case_name, rendered)
    problems = differences(case_name, rendered)
    assert not problems, (f"case {case_name}: " + "; ".join(problems)
                          + " (rerun with --update-golden and review the diff)")


def test_every_output_has_an_input():
    inputs = set(case_names())
    orphans = sorted(path.name for path in OUTPUTS.glob("*.yaml") if path.name.split(".")[0] not in inputs)
    assert not orphans, f"outputs without an input in {INPUTS}: {orphans}"
    kinds = {path.name.split(".")[1] for path in OUTPUTS.glob("*.yaml")}
    assert kinds <= set(TYPE_OF_KIND), f"unknown output kinds: {sorted(kinds - set(TYPE_OF_KIND))}"


# Which case shows each Envoy feature and role (issue 8: at least one per feature and per role), and the
# text in its output that proves it. A case translates through the gateway or the sidecar role (`translate`).
COVERAGE = [
    ("mcp filter", "quickstart", "listeners", "envoy.filters.http.mcp"),
    ("rbac: ServiceAccount source", "quickstart", "routes", "quickstart/quickstart-agents-only#research-agent"),
    ("rbac: SPIFFE source", "quickstart", "routes", "quickstart/quickstart-agents-only#math-agent"),
    ("rbac: tool grants, the rest denied", "quickstart", "routes", "quickstart/everything-tool-grants#math-tools"),
    ("rbac: HTTP attributes", "cel-and-http-attributes", "routes", "x-env"),
    ("rbac: CEL condition", "cel-and-http-attributes", "routes", "condition:"),
    ("ext_authz over gRPC", "external-auth", "clusters", "ext-authz/grpc/quickstart/authz/50051"),
    ("ext_authz over HTTP", "external-auth", "clusters", "ext-authz/http/quickstart/authz-http/8080"),
    ("ext_authz per route", "external-auth", "routes", "envoy.filters.http.ext_authz.backend"),
    ("jsonrpc denial", "quickstart", "listeners", "Access to this tool is forbidden."),
    ("access log", "quickstart", "listeners", "envoy.access_loggers.stdout"),
    ("otel: OpenTelemetry tracer", "otel-gateway", "listeners", "envoy.tracers.opentelemetry"),
    ("otel: OpenTelemetry access log", "otel-gateway", "listeners", "envoy.access_loggers.open_telemetry"),
    ("otel: the collector over HTTP/2", "otel-gateway", "clusters", "http2ProtocolOptions"),
    ("otel: sidecar inbound traces too", "otel-sidecar", "listeners", "serviceName: sidecar~tools~weather-server"),
    ("tls: HTTPS listener with SDS", "quickstart", "listeners", "tlsCertificateSdsSecretConfigs"),
    ("plain HTTP listener", "gateway-api", "listeners", "name: listener-80"),
    ("Service backend beside an XBackend", "gateway-api", "clusters", "service/team-a/mcp-svc/3001"),
    ("sidecar inbound: STRICT mTLS with the workload's SVID", "sidecar-inbound", "listeners", "workload-cert"),
    ("sidecar inbound: XBackend grants", "sidecar-inbound", "routes", "tools/weather-grants#research"),
    ("sidecar inbound: the local app port", "sidecar-inbound", "clusters", "inbound|3001"),
    ("sidecar outbound: explicit proxy on 15001", "sidecar-outbound", "listeners", "portValue: 15001"),
    ("sidecar outbound: peer SPIFFE ID pinned", "sidecar-outbound", "clusters",
     "spiffe://cluster.local/ns/tools/sa/weather-server"),
    ("sidecar outbound: to the peers' inbound port", "sidecar-outbound", "endpoints", "portValue: 15006"),
]


@pytest.mark.parametrize(("feature", "case", "kind", "marker"), COVERAGE, ids=[c[0] for c in COVERAGE])
def test_each_feature_has_a_golden_case(feature, case, kind, marker):
    assert marker in out_path(case, kind).read_text(), f"{feature}: {marker!r} not in {out_path(case, kind).name}"


def golden_resources(case: str) -> list[Resource]:
    """The committed outputs of a case, back as resources."""
    return [Resource(TYPE_OF_KIND[kind], doc["name"], doc["resource"])
            for kind, path in sorted(existing_outputs(case).items())
            for doc in yaml.safe_load_all(path.read_text())]


def runtime_secrets() -> list[Resource]:
    """What the identity room would add over SDS: a server certificate and the trust bundle."""
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    ident = ca.issue("spiffe://cluster.local/ns/golden/sa/gateway")
    return [Resource(types.SECRET, sds.SERVER_CERT_SECRET, sds.tls_certificate_secret(sds.SERVER_CERT_SECRET, ident)),
            Resource(types.SECRET, sds.WORKLOAD_CERT_SECRET,
                     sds.tls_certificate_secret(sds.WORKLOAD_CERT_SECRET, ident)),
            Resource(types.SECRET, sds.TRUST_BUNDLE_SECRET,
                     sds.validation_context_secret(sds.TRUST_BUNDLE_SECRET, ca.bundle_pem))]


@pytest.mark.slow
@pytest.mark.parametrize("case_name", case_names())
def test_envoy_accepts_the_golden_outputs(case_name, tmp_path):
    case = Case.read(INPUTS / f"{case_name}.yaml")
    if case.requires is not None and not case.requires.exists():
        pytest.skip(f"case {case_name} reads {case.requires}, which is absent")
    resources = golden_resources(case_name)
    assert {r.type_url for r in resources} >= {types.LISTENER, types.ROUTE, types.CLUSTER}
    if not any(r.type_url == types.SECRET for r in resources):
        resources += runtime_secrets()
    resources += placeholder_credentials(resources)
    result = envoy_validate(static_bootstrap(resources), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
