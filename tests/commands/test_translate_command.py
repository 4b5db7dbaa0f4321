"""`agentic-cp translate`: what serve sends a Gateway's proxy, offline, in YAML or JSON."""

from __future__ import annotations

import json
import shutil

import yaml

from controlplane.api.base import ResourceKey
from controlplane.cli import main
from controlplane.controller import Publisher
from controlplane.graph.model import AuthorizationGraph
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.sources.directory import DirectorySource
from controlplane.xds import resources as types
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resources import Resource
from controlplane.xds.serialize import SerializingCache
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"
GOLDEN = ROOT / "tests" / "translate" / "testdata" / "out"
KINDS = {"listeners": types.LISTENER, "routes": types.ROUTE, "clusters": types.CLUSTER, "endpoints": types.ENDPOINT}


def translate(capsys, *args) -> tuple[int, str, str]:
    code = main(["translate", "--config", str(QUICKSTART), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_yaml_is_the_golden_translation_and_names_the_serve_time_secrets(capsys):
    code, out, _ = translate(capsys, "--gateway", "quickstart/agent-gateway")
    assert code == 0
    assert "SDS secrets are issued at serve time" in out.splitlines()[1]
    docs = yaml.safe_load(out)
    assert set(docs) == {"listeners", "routes", "clusters", "endpoints"}
    for kind, items in docs.items():
        golden = list(yaml.safe_load_all((GOLDEN / f"quickstart.{kind}.yaml").read_text()))
        assert items == golden, kind


def test_json_carries_what_serve_publishes_byte_for_byte(capsys):
    code, out, _ = translate(capsys, "--gateway", "quickstart/agent-gateway", "-o", "json")
    assert code == 0
    printed = json.loads(out)
    assert printed["gateway"] == "quickstart/agent-gateway"
    graph = AuthorizationGraph()
    graph.apply(DirectorySource(QUICKSTART).load())
    publisher = Publisher(graph=graph, cache=SnapshotCache(),
                          certificates=CertificateManager(CertificateAuthority.create(trust_domain="cluster.local")))
    publisher.publish()
    served = publisher.cache.get("gateway~quickstart~agent-gateway")
    serializer = SerializingCache()  # the serializer serve uses (routes are assembled from parts)
    for kind, type_url in KINDS.items():
        offline = {d["name"]: serializer.get(Resource(type_url, d["name"], d["resource"])).body
                   for d in printed[kind]}
        assert offline == {name: r.body for name, r in served.resources(type_url).items()}, kind
    assert set(served.resources(types.SECRET)) == set(printed["serveTimeSecrets"])


def test_an_unknown_gateway_is_an_error_naming_the_nearest(capsys):
    code, out, err = translate(capsys, "--gateway", "quickstart/agent-gw")
    assert code == 2 and out == ""
    assert err.strip() == "agentic-cp: --gateway quickstart/agent-gw: no such Gateway; did you mean " \
                          "quickstart/agent-gateway?"


def test_a_gateway_of_another_controller_is_a_failure_saying_why(capsys, tmp_path):
    folder = tmp_path / "q"
    shutil.copytree(QUICKSTART, folder)
    cluster = folder / "00-cluster.yaml"
    cluster.write_text(cluster.read_text().replace("sigs.k8s.io/kube-agentic-networking-controller", "example.com/x"))
    assert main(["translate", "--config", str(folder), "--gateway", "quickstart/agent-gateway"]) == 1
    assert "not of a GatewayClass this control plane manages" in capsys.readouterr().err
    assert ResourceKey("Gateway", "quickstart", "agent-gateway").ref == "quickstart/agent-gateway"


MESH = ROOT / "tests" / "translate" / "testdata" / "mesh"


def test_a_workloads_sidecar_is_translated_as_its_golden_case(capsys):
    code = main(["translate", "--config", str(MESH), "--workload", "tools/weather-server", "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["serviceaccount"] == "tools/weather-server"
    assert out["serveTimeSecrets"] == ["workload-cert", "spiffe-trust-bundle"]
    golden = list(yaml.safe_load_all((GOLDEN / "sidecar-inbound.listeners.yaml").read_text()))
    assert [doc["name"] for doc in out["listeners"]] == [doc["name"] for doc in golden]


def test_an_unknown_workload_is_a_usage_error_naming_the_nearest(capsys):
    code = main(["translate", "--config", str(MESH), "--workload", "tools/weather-servr"])
    assert code == 2 and "did you mean tools/weather-server?" in capsys.readouterr().err
