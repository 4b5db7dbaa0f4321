"""`agentic-cp analyze --kubeconfig`: a cluster's objects, read through the official client from the fake
API server, checked as files are; problems name the object (a cluster has no line numbers)."""

from __future__ import annotations

import asyncio
import copy
import json
import threading

import pytest
import yaml

from controlplane.cli import main
from controlplane.kube.kinds import XACCESSPOLICY
from tests.conftest import ROOT
from tests.kube.fakeapi import FakeApiServer

QUICKSTART = ROOT / "examples" / "quickstart"


def quickstart_objects() -> list[dict]:
    return [doc for path in sorted(QUICKSTART.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


class ServerThread:
    """The fake API server on its own loop in a thread, since `analyze` runs its own asyncio.run."""

    def __init__(self, server: FakeApiServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def cluster():
    with ServerThread(FakeApiServer()) as server:
        for obj in quickstart_objects():
            server.create(obj)
        yield server


def analyze(capsys, *args) -> tuple[int, list[str], str]:
    code = main(["analyze", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_the_quickstart_in_a_cluster_warns_as_its_files_do_naming_the_object(cluster, tmp_path, capsys):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    code, out, err = analyze(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 0, err
    assert out == [("cluster/cluster/xaccesspolicies/quickstart/quickstart-agents-only: "
                    "warning AgentWithoutTools XAccessPolicy quickstart/quickstart-agents-only: spec.rules: "
                    "spiffe://cluster.local/ns/quickstart/sa/intern-agent has no path to any tool: no Gateway "
                    "listener -> HTTPRoute -> XBackend path allows its tools/call at both levels "
                    "(fix: grant it a tool at the Gateway and at an XBackend)")]
    assert "0 errors, 1 warnings in 12 resources" in err


def test_a_dangling_parent_and_a_typo_in_the_cluster_are_errors_exit_1(cluster, tmp_path, capsys):
    route = next(o for o in quickstart_objects() if o["kind"] == "HTTPRoute")
    dangling = copy.deepcopy(route)
    dangling["metadata"]["name"] = "dangling-route"
    dangling["spec"]["parentRefs"] = [{"name": "agent-gatewy"}]
    cluster.create(dangling)
    policy = copy.deepcopy(cluster.get(XACCESSPOLICY, "quickstart", "everything-tool-grants"))
    policy["metadata"] = {"name": "typo", "namespace": "quickstart"}
    policy["spec"]["rules"][0]["source"]["serviceAcount"] = policy["spec"]["rules"][0]["source"].pop("serviceAccount")
    cluster.create(policy)
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    code, out, _ = analyze(capsys, "--kubeconfig", str(kubeconfig), "-o", "json")
    assert code == 1
    found = {(f["code"], f["object"]): f for f in json.loads("\n".join(out))}
    parent = found[("ParentNotFound", "HTTPRoute quickstart/dangling-route")]
    assert parent["line"] is None and parent["fix"] == "did you mean Gateway quickstart/agent-gateway?"
    typo = found[("UnknownField", "XAccessPolicy quickstart/typo")]
    assert typo["fix"] == "did you mean 'serviceAccount'?" and typo["origin"].endswith("/quickstart/typo")


def test_a_kind_the_apiserver_refuses_is_an_error_and_a_missing_crd_a_warning(cluster, tmp_path, capsys):
    cluster.forbid("xaccesspolicies")
    cluster.uninstall("ratelimitpolicies")
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    code, out, _ = analyze(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 1
    forbidden = [line for line in out if " error Forbidden XAccessPolicy -" in line]
    assert len(forbidden) == 1 and "grant list on xaccesspolicies.agentic.networking.x-k8s.io" in forbidden[0]
    assert any(" warning NotServed RateLimitPolicy -" in line for line in out), out


def test_an_unreachable_api_server_is_one_line_exit_1(tmp_path, capsys):
    server = FakeApiServer()
    server.url = "http://127.0.0.1:1"  # nothing listens on port 1
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    code, out, err = analyze(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 1 and out == []
    assert err.startswith(f"agentic-cp: cannot read the cluster of --kubeconfig {kubeconfig}: ") and err.count("\n") == 1


@pytest.mark.parametrize("args", [[], ["somewhere", "--kubeconfig", "k"], ["--context", "x", "somewhere"]])
def test_paths_or_kubeconfig_exactly_one(tmp_path, capsys, args):
    code, _, err = analyze(capsys, *args)
    assert code == 2 and err.startswith("agentic-cp: ") and err.count("\n") == 1
