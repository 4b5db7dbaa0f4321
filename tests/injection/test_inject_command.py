"""`agentic-cp inject -f` and `agentic-cp sidecar-bootstrap`, through the CLI's main."""

from __future__ import annotations

import io
import sys

import pytest
import yaml

from controlplane.cli import main
from controlplane.translate.injection import PROXY_CONTAINER
from tests.injection.pods import as_model, pod, workload
from tests.support.envoy import validate

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "weather", "namespace": "tools"},
           "spec": {"ports": [{"port": 80}]}}


def write(tmp_path, *docs) -> str:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def test_inject_prints_every_document_with_workloads_injected(tmp_path, capsys):
    opted_out = pod()
    opted_out["metadata"]["labels"] = {"agentic-cp.dev/inject": "false"}
    path = write(tmp_path, workload("Deployment"), SERVICE, pod(), opted_out)
    assert main(["inject", "-f", path]) == 0
    captured = capsys.readouterr()
    deployment, service, injected, untouched = yaml.safe_load_all(captured.out)
    assert service == SERVICE and untouched == opted_out
    assert PROXY_CONTAINER in [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    _, round_trip = as_model(injected, "V1Pod")
    assert round_trip == injected
    assert "not injected: pod agentic-cp.dev/inject=false" in captured.err


def test_inject_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(yaml.safe_dump(pod()).encode())))
    assert main(["inject", "-f", "-"]) == 0
    (out,) = yaml.safe_load_all(capsys.readouterr().out)
    assert out["metadata"]["annotations"]["agentic-cp.dev/status"] == "injected"


@pytest.mark.parametrize("text, message", [
    ("kind: Pod\nspec: [unclosed\n", "not YAML"),
    ("a: b\n  c: d\n", "not YAML"),
    ("kind: Pod\nmetadata: {name: p}\nspec: {containers: 7}\n", "in.yaml:1: Pod default/p: spec.containers: must be a list"),
    ("kind: Deployment\nmetadata: {name: d}\nspec: {}\n", "Deployment default/d: spec: missing"),
    ("kind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n", "spec.template: missing"),
])
def test_bad_input_is_one_line_and_prints_nothing(tmp_path, capsys, text, message):
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(SERVICE) + "---\n" + text)
    assert main(["inject", "-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "", "nothing half-injected reaches a pipe into kubectl apply"
    assert message in captured.err and captured.err.count("\n") == 1


def test_a_missing_file_and_binary_input_are_one_line(tmp_path, capsys):
    assert main(["inject", "-f", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read -f" in capsys.readouterr().err
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00kind")
    assert main(["inject", "-f", str(binary)]) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_a_bad_xds_address_is_a_usage_error(tmp_path, capsys):
    assert main(["inject", "-f", write(tmp_path, pod()), "--xds-address", "nohost"]) == 2
    assert "--xds-address" in capsys.readouterr().err


@pytest.mark.parametrize("workload_arg", ["tools/", "/sa", "a~b/c"])
def test_sidecar_bootstrap_refuses_a_half_written_workload(tmp_path, capsys, workload_arg):
    args = ["sidecar-bootstrap", "--workload", workload_arg, "--xds-address", "cp:15010",
            "--credentials-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "--workload" in capsys.readouterr().err


@pytest.mark.slow
def test_sidecar_bootstrap_is_valid_for_envoy(tmp_path, capsys):
    """What the init container writes, with credentials where the Secret is mounted: Envoy accepts it."""
    creds, out = tmp_path / "creds", tmp_path / "out"
    assert main(["identity", "issue", "--state-dir", str(tmp_path / "state"), "--spiffe-id",
                 "spiffe://cluster.local/ns/tools/sa/weather-server", "--out", str(creds)]) == 0
    assert main(["sidecar-bootstrap", "--workload", "tools/weather-server", "--xds-address",
                 "agentic-cp.agentic-system.svc:15010", "--credentials-dir", str(creds), "--out", str(out)]) == 0
    assert "sidecar~tools~weather-server" in capsys.readouterr().out
    bootstrap = yaml.safe_load((out / "envoy.yaml").read_text())
    assert bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 15021
    result = validate(out / "envoy.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
