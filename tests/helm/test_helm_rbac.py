"""The chart's RBAC, evaluated: what the rendered Roles and bindings allow, against what the code calls.

`NEEDED` is the table of Kubernetes API calls this project makes, by module: HTTP method, kind and where
(any namespace, the release namespace, a Gateway's namespace). `test_the_table_lists_every_call_the_code_makes`
greps those modules so a new call cannot go unnoticed; the other tests evaluate the rendered RBAC objects
(bindings to roles, namespaces, resourceNames) the way the apiserver does, for the default and other values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from controlplane.kube.kinds import ALL_KINDS, LEASE, SERVICE
from controlplane.kube.provisioner import KINDS_IN_ORDER
from tests.helm.helm_support import CUSTOM_VALUES, NAMESPACE, RELEASE, REPO_ROOT, find, render

CLUSTER, RELEASE_NS, GATEWAY_NS = "any namespace", "release namespace", "gateway namespace"
GATEWAY_NAMESPACES = ("team-a", "team-b")
SUBJECT = {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}


@dataclass(frozen=True)
class Call:
    module: str
    method: str  # HTTP method, or WATCH
    group: str
    resource: str
    where: str
    verbs: tuple[str, ...]  # what RBAC checks for it
    name: str | None = None
    optional: bool = False  # the code survives a 403 (logs it; ownerReferences do the clean-up)


def _needed() -> list[Call]:
    calls = []
    for kind in ALL_KINDS:  # kube/watch.py lists then watches every kind, across namespaces
        calls.append(Call("kube/watch.py", "GET", kind.group, kind.plural, CLUSTER, ("list",)))
        calls.append(Call("kube/watch.py", "WATCH", kind.group, kind.plural, CLUSTER, ("watch",)))
    for group, plural in [("gateway.networking.k8s.io", "gatewayclasses"), ("gateway.networking.k8s.io", "gateways"),
                          ("gateway.networking.k8s.io", "httproutes"),
                          ("agentic.networking.x-k8s.io", "xaccesspolicies"),
                          ("agentic.networking.x-k8s.io", "xbackends"),
                          ("governance.agentic-cp.dev", "ratelimitpolicies"),
                          ("governance.agentic-cp.dev", "guardrailpolicies")]:
        calls.append(Call("kube/status_writer.py", "PATCH", group, f"{plural}/status", CLUSTER, ("patch",)))
    for method, verb in [("GET", "get"), ("POST", "create"), ("PUT", "update")]:
        calls.append(Call("kube/leader.py", method, LEASE.group, LEASE.plural, RELEASE_NS, (verb,)))
    calls.append(Call("kube/ca_secret.py", "GET", "", "secrets", RELEASE_NS, ("get",), name=f"{RELEASE}-ca"))
    calls.append(Call("kube/ca_secret.py", "POST", "", "secrets", RELEASE_NS, ("create",)))
    for kind in KINDS_IN_ORDER:
        # Server-side apply: PATCH, and `create` when the object does not exist yet.
        calls.append(Call("kube/provisioner.py", "PATCH", kind.group, kind.plural, GATEWAY_NS, ("create", "patch")))
        calls.append(Call("kube/provisioner.py", "DELETE", kind.group, kind.plural, GATEWAY_NS, ("delete",)))
        calls.append(Call("kube/provisioner.py", "GET", kind.group, kind.plural, CLUSTER, ("list",),
                          optional=kind.plural in ("secrets", "configmaps", "deployments")))
    calls.append(Call("kube/provisioner.py", "GET", SERVICE.group, SERVICE.plural, GATEWAY_NS, ("get",)))
    # The injection webhook's caBundle (`injection.enabled` only: tests/helm/test_helm_injection.py grants
    # it there); its loop survives a 403 with a warning.
    for method, verb in [("GET", "get"), ("PATCH", "patch")]:
        calls.append(Call("kube/webhook_ca.py", method, "admissionregistration.k8s.io", "mutatingwebhookconfigurations",
                          CLUSTER, (verb,), name=f"{RELEASE}-sidecar-injector", optional=True))
    return calls


NEEDED = _needed()


# The official client's calls, by the verb their generated names start with, as HTTP methods.
VERB_METHODS = {"read": "GET", "list": "GET", "create": "POST", "replace": "PUT", "patch": "PATCH", "delete": "DELETE"}
# The modules that hold the client itself, and the names of the official calls (they call nothing).
CLIENT_MODULES = {"kube/client.py", "kube/typed.py"}


def official_calls(text: str) -> set[str]:
    """The HTTP methods a module's official client calls use: `patch_namespaced_lease` is PATCH,
    `namespaced_call(..., verb="read")` is GET, `list_call` is GET, a `Watch(` is WATCH."""
    verbs = re.findall(r"\b(read|list|create|replace|patch|delete)_(?:namespaced|cluster)_\w+", text)
    verbs += re.findall(r'\bverb="(\w+)"', text)
    used = {VERB_METHODS[verb] for verb in verbs}
    if re.search(r"\blist_call\b", text):
        used.add("GET")
    if re.search(r"\bWatch\(", text):
        used.add("WATCH")
    return used


def test_the_table_lists_every_call_the_code_makes():
    for module in sorted({c.module for c in NEEDED}):
        text = (REPO_ROOT / "controlplane" / module).read_text()
        assert official_calls(text) == {c.method for c in NEEDED if c.module == module}, module
    # And no other module talks to the apiserver.
    for path in (REPO_ROOT / "controlplane").rglob("*.py"):
        module = path.relative_to(REPO_ROOT / "controlplane").as_posix()
        if module not in {c.module for c in NEEDED} | CLIENT_MODULES:
            talks = re.search(r"\bapi\.call\(|^\s*(from|import) kubernetes_asyncio", path.read_text(), re.MULTILINE)
            assert not talks, module


# --- evaluating RBAC --------------------------------------------------------------------------------------


def _bound_rules(objects: list[dict]) -> list[tuple[str | None, dict]]:
    """(namespace or None for cluster-wide, rule) for every rule bound to the control plane's account."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    bound = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or SUBJECT not in binding["subjects"]:
            continue
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
        bound += [(scope, rule) for rule in role["rules"]]
    return bound


def allows(objects: list[dict], verb: str, group: str, resource: str, *, namespace: str | None,
           name: str | None = None) -> bool:
    """Whether the account may `verb` the resource in `namespace` (None: across all namespaces)."""
    for scope, rule in _bound_rules(objects):
        if scope is not None and scope != namespace:
            continue
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or (name in names and verb not in ("list", "watch", "create")):
                return True
    return False


def _namespaces(where: str, gateway_namespaces: tuple[str, ...]) -> list[str | None]:
    return {CLUSTER: [None], RELEASE_NS: [NAMESPACE], GATEWAY_NS: list(gateway_namespaces)}[where]


def _missing(objects: list[dict], gateway_namespaces: tuple[str, ...], *, include_optional: bool,
             secrets: bool = True) -> list[str]:
    missing = []
    for call in NEEDED:
        if (call.optional and not include_optional) or (call.resource == "secrets" and not secrets
                                                         and call.where == GATEWAY_NS):
            continue
        for namespace in _namespaces(call.where, gateway_namespaces):
            for verb in call.verbs:
                if not allows(objects, verb, call.group, call.resource, namespace=namespace, name=call.name):
                    missing.append(f"{call.module} {call.method} {call.resource} in {namespace}: {verb}")
    return missing


NAMESPACED = {"provisioning": {"namespaces": list(GATEWAY_NAMESPACES)}}
RENDERS = {
    "default": {},
    "custom": CUSTOM_VALUES,
    "namespaced": NAMESPACED,
    "cluster-wide-secrets": {"provisioning": {"clusterWideSecrets": True}},
}


@pytest.fixture(scope="module", params=list(RENDERS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(RENDERS[request.param])


# --- what the code needs is granted -----------------------------------------------------------------------


def test_default_grants_every_call_and_gateways_anywhere_but_secrets_only_at_home():
    objects = render()
    assert _missing(objects, GATEWAY_NAMESPACES, include_optional=False, secrets=False) == []
    assert _missing(objects, (NAMESPACE,), include_optional=False) == []
    # Clean-up finds ConfigMaps and Deployments by listing; Secrets are left to ownerReferences.
    assert allows(objects, "list", "", "configmaps", namespace=None)
    assert allows(objects, "list", "apps", "deployments", namespace=None)
    # A Gateway's proxy credentials outside the release namespace are not writable by default.
    assert not allows(objects, "patch", "", "secrets", namespace="team-a")


def test_namespaced_mode_grants_every_call_in_the_listed_namespaces_only():
    objects = render(NAMESPACED)
    # Optional calls (cluster-wide listing for clean-up of ConfigMaps, Deployments, Secrets) are denied.
    assert _missing(objects, GATEWAY_NAMESPACES, include_optional=False) == []
    for namespace in GATEWAY_NAMESPACES:
        assert allows(objects, "patch", "", "secrets", namespace=namespace)
        assert allows(objects, "create", "apps", "deployments", namespace=namespace)
    for verb in ("create", "patch", "delete"):
        for kind in KINDS_IN_ORDER:
            assert not allows(objects, verb, kind.group, kind.plural, namespace="team-c"), (verb, kind.plural)


def test_namespaced_mode_writes_through_roles_only():
    objects = render(NAMESPACED)
    for role in find(objects, "ClusterRole"):
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"} or rule["resources"][0].endswith("/status"), rule
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objects, "Role")}
    assert {(ns, f"{RELEASE}-provisioner") for ns in GATEWAY_NAMESPACES} <= roles
    for ns in GATEWAY_NAMESPACES:
        [binding] = [b for b in find(objects, "RoleBinding", f"{RELEASE}-provisioner")
                     if b["metadata"]["namespace"] == ns]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": f"{RELEASE}-provisioner"}
        assert binding["subjects"] == [SUBJECT]


def test_cluster_wide_secrets_only_when_asked():
    objects = render({"provisioning": {"clusterWideSecrets": True}})
    assert allows(objects, "patch", "", "secrets", namespace="team-a")
    assert not allows(objects, "list", "", "secrets", namespace=None)
    assert not allows(objects, "get", "", "secrets", namespace="team-a")


# --- nothing more ------------------------------------------------------------------------------------------


def test_no_cluster_wide_secret_reads_and_no_unused_grants(rendered):
    which, objects = rendered
    for verb in ("get", "list", "watch"):
        assert not allows(objects, verb, "", "secrets", namespace="team-a"), (which, verb)
        assert not allows(objects, verb, "", "secrets", namespace=None), (which, verb)
    if which != "cluster-wide-secrets":
        for verb in ("create", "update", "patch", "delete"):
            assert not allows(objects, verb, "", "secrets", namespace="team-c"), (which, verb)
        secret_rules = [r for role in find(objects, "ClusterRole") for r in role["rules"] if "secrets" in r["resources"]]
        assert secret_rules == [], which
    for _, rule in _bound_rules(objects):
        assert "authentication.k8s.io" not in rule["apiGroups"], "no code reviews tokens"
        assert not any("*" in part for part in rule["apiGroups"] + rule["resources"] + rule["verbs"])
        assert "nonResourceURLs" not in rule
        if "update" in rule["verbs"]:
            assert rule["resources"] == ["leases"], "only the Lease is written with PUT"
        if "escalate" in rule["verbs"] or "bind" in rule["verbs"] or "impersonate" in rule["verbs"]:
            pytest.fail(f"{which}: {rule}")


def test_every_grant_is_used(rendered):
    """Each (verb, resource) the chart grants is in the table (reads beyond `list`/`watch`: `get`)."""
    which, objects = rendered
    used = {(v, c.group, c.resource) for c in NEEDED for v in c.verbs}
    used |= {("get", c.group, c.resource) for c in NEEDED if "list" in c.verbs}  # reading what is listed
    for _, rule in _bound_rules(objects):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (verb, group, resource) in used, (which, verb, group, resource)


def test_ca_secret_role_reads_only_the_ca(rendered):
    _, objects = rendered
    assert allows(objects, "get", "", "secrets", namespace=NAMESPACE, name=f"{RELEASE}-ca")
    assert not allows(objects, "get", "", "secrets", namespace=NAMESPACE, name="someone-elses")
