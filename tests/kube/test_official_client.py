"""The official client is the one talking to the apiserver, and no hand-written HTTP is left in `kube/`.

Why: issue 9 replaced about 900 lines of aiohttp requests, list/watch and retries with the official
`kubernetes_asyncio` client. These tests hold that: the fake apiserver sees the official client's
User-Agent on every kind of call the control plane makes (list, watch, Lease, status, Secret), and
the source of `controlplane/kube` holds no aiohttp session or request of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from controlplane.api.base import ResourceKey
from controlplane.kube.ca_secret import SECRET, load_or_create_from_secret
from controlplane.kube.client import KubeApi, KubeconfigError, check_kubeconfig
from controlplane.kube.kinds import ALL_KINDS, LEASE, SERVICE, XACCESSPOLICY
from controlplane.kube.leader import LeaderElector
from controlplane.kube.status_writer import StatusWriter
from tests.kube.conftest import Consumer, obj, wait_until
from tests.kube.fakeapi import FakeApiServer, flag

KUBE = Path(__file__).resolve().parents[2] / "controlplane" / "kube"
OFFICIAL_USER_AGENT = "OpenAPI-Generator/"  # what kubernetes_asyncio's ApiClient sends


@pytest.fixture
async def server():
    """The fake apiserver, serving Secrets too (for the CA)."""
    fake = FakeApiServer(kinds=ALL_KINDS + (LEASE, SECRET))
    await fake.start()
    yield fake
    await fake.stop()


class Leading:
    is_leader = True

    def subscribe(self, callback) -> None:
        pass


async def test_every_call_the_control_plane_makes_comes_from_the_official_client(server, api, make_source):
    server.create(obj(SERVICE, "svc"))
    server.create(obj(XACCESSPOLICY, "policy"))
    async with Consumer(make_source(kinds=(SERVICE,))) as consumer:
        await consumer.wait_for(lambda: ResourceKey("Service", "default", "svc") in consumer.state)
        await wait_until(lambda: any(flag(r.query, "watch") for r in server.requests))
    elector = LeaderElector(api=api, namespace="agentic-system", identity="replica-1",
                            lease_duration=3, renew_deadline=2, retry_period=0.05)
    elector.start()
    await wait_until(lambda: elector.is_leader)
    await elector.stop()
    assert await StatusWriter(api=api, elector=Leading()).write(XACCESSPOLICY, "default", "policy", {"a": 1})
    await load_or_create_from_secret(api, namespace="agentic-system", trust_domain="example.org")

    calls = {(r.method, "watch" if flag(r.query, "watch") else r.path.split("/")[-1]) for r in server.requests}
    assert {("GET", "services"), ("GET", "watch"), ("POST", "leases"), ("PUT", "agentic-cp-leader"),
            ("PATCH", "status"), ("GET", "agentic-cp-ca"), ("POST", "secrets")} <= calls, calls
    agents = {r.user_agent for r in server.requests}
    assert all(agent.startswith(OFFICIAL_USER_AGENT) for agent in agents), agents


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_hand_written_http_is_left_in_kube():
    for path in sorted(KUBE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        imported = _imports(tree)
        assert "kubernetes" not in imported, f"{path.name}: the synchronous client; use kubernetes_asyncio"
        if path.name != "client.py":
            assert "aiohttp" not in imported, f"{path.name} imports aiohttp"
            continue
        # client.py may name aiohttp's exception types (the official client lets them through), nothing else.
        used = {node.attr for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "aiohttp"}
        assert used == {"ClientError"}, used


async def test_a_kubeconfig_is_read_by_the_official_loader(server, tmp_path):
    server.token = "s3cret"
    server.create(obj(SERVICE, "svc"))
    api = KubeApi.from_kubeconfig(path=str(server.write_kubeconfig(tmp_path / "config", token="s3cret")))
    try:
        apis = await api.apis()
        assert apis.client.configuration.host == server.url
        listed = await api.call(lambda k: k.core.list_service_for_all_namespaces)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["svc"]
    finally:
        await api.close()


def test_a_missing_kubeconfig_or_context_fails_at_once(server, tmp_path):
    with pytest.raises(KubeconfigError, match="No such file"):
        KubeApi.from_kubeconfig(path=str(tmp_path / "nonexistent"))
    kubeconfig = server.write_kubeconfig(tmp_path / "config", context="team")
    with pytest.raises(KubeconfigError, match=r"no context 'other' \(known: team\); see `kubectl config get-contexts"):
        KubeApi.from_kubeconfig(path=str(kubeconfig), context="other")


@pytest.mark.parametrize(("text", "says"), [
    ("clusters: [\n  - name: a\n", "not valid YAML at line"),
    ("- just\n- a list\n", "is not a kubeconfig"),
    ("", "is not a kubeconfig"),
    ("apiVersion: v1\nkind: Config\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n", "sets no current-context"),
    ("current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: []\n", "names cluster 'c'"),
    ("current-context: b\ncontexts: [{name: a, context: {cluster: c}}]\n", "no context 'b' (known: a)"),
])
def test_a_broken_kubeconfig_is_one_line_naming_what_to_run(tmp_path, text, says):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(KubeconfigError) as raised:
        check_kubeconfig(str(path), None)
    assert says in str(raised.value) and "\n" not in str(raised.value)
