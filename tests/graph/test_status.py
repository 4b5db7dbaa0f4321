"""Status computed from the authorization graph: every condition and reason lands on the right object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controlplane.api.base import ResourceKey
from controlplane.graph.status import (
    all_statuses,
    gateway_status,
    httproute_status,
    managed_gateways,
    policy_status,
)
from tests.graph.status_manifests import condition, graph_of, policy, route

CONTROLLER = "sigs.k8s.io/kube-agentic-networking-controller"
GW = ResourceKey("Gateway", "apps", "gw")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
XBACKEND_TARGET = {"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "tools"}


def pkey(name: str, namespace: str = "apps") -> ResourceKey:
    return ResourceKey("XAccessPolicy", namespace, name)


def rkey(name: str, namespace: str = "apps") -> ResourceKey:
    return ResourceKey("HTTPRoute", namespace, name)


def accepted(status: dict, index: int = 0) -> dict:
    return condition(status["ancestors"][index]["conditions"], "Accepted")


# --- policies --------------------------------------------------------------------------------------------


def test_accepted_policy_has_one_ancestor_per_target():
    graph = graph_of(extra=[policy("p", targets=[
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "sectionName": "https"}],
        generation=7)])
    status = policy_status(graph, pkey("p"), controller_name=CONTROLLER, generation=7, now=NOW)
    assert [a["ancestorRef"] for a in status["ancestors"]] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "apps"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "apps",
         "sectionName": "https"},
    ]
    for ancestor in status["ancestors"]:
        assert ancestor["controllerName"] == CONTROLLER
        assert ancestor["conditions"] == [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "Policy has been accepted",
            "observedGeneration": 7, "lastTransitionTime": "2026-01-02T03:04:05Z"}]


def test_sixth_policy_on_one_target_exceeds_the_limit_youngest_first():
    base = datetime(2025, 1, 1, tzinfo=UTC)
    stamped = [policy(f"p{i}", created=(base + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
               for i in (5, 3, 1, 4, 2, 0)]  # p5 is the youngest
    graph = graph_of(extra=stamped)
    reasons = {f"p{i}": accepted(policy_status(graph, pkey(f"p{i}"), controller_name=CONTROLLER,
                                               generation=1, now=NOW)) for i in range(6)}
    assert {n: c["status"] for n, c in reasons.items()} == {
        "p0": "True", "p1": "True", "p2": "True", "p3": "True", "p4": "True", "p5": "False"}
    assert reasons["p5"]["reason"] == "LimitPerTargetExceeded"
    assert "at most 5" in reasons["p5"]["message"]


def test_without_timestamps_seniority_is_namespace_then_name():
    graph = graph_of(extra=[policy(name) for name in ("f", "b", "e", "a", "d", "c")])
    rejected = [n for n in "abcdef" if accepted(policy_status(graph, pkey(n), controller_name=CONTROLLER))[
        "status"] == "False"]
    assert rejected == ["f"]
    # a timestamped policy is senior to every directory one
    graph = graph_of(extra=[policy(name) for name in "abcde"] + [policy("z", created="2025-01-01T00:00:00Z")])
    assert accepted(policy_status(graph, pkey("z"), controller_name=CONTROLLER))["status"] == "True"
    assert accepted(policy_status(graph, pkey("e"), controller_name=CONTROLLER))["reason"] == \
        "LimitPerTargetExceeded"


def test_second_external_auth_policy_on_a_target_is_rejected():
    graph = graph_of(extra=[
        policy("ext-2", action="ExternalAuth", created="2025-01-01T00:00:01Z"),
        policy("ext-1", action="ExternalAuth", created="2025-01-01T00:00:00Z"),
        policy("allow", created="2025-01-01T00:00:02Z")])
    assert accepted(policy_status(graph, pkey("ext-1"), controller_name=CONTROLLER))["status"] == "True"
    second = accepted(policy_status(graph, pkey("ext-2"), controller_name=CONTROLLER))
    assert (second["status"], second["reason"]) == ("False", "LimitPerTargetExceeded")
    assert "ExternalAuth" in second["message"]
    assert accepted(policy_status(graph, pkey("allow"), controller_name=CONTROLLER))["status"] == "True"


def test_invalid_cel_missing_target_and_unsupported_kind():
    graph = graph_of(extra=[
        policy("bad-cel", cel="request.method == "),
        policy("good-cel", cel="request.method == 'POST'"),
        policy("missing", targets=[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "nope"}]),
        policy("wrong-kind", targets=[{"group": "", "kind": "Service", "name": "mcp"}]),
        policy("on-backend", targets=[XBACKEND_TARGET])])
    got = {name: accepted(policy_status(graph, pkey(name), controller_name=CONTROLLER))
           for name in ("bad-cel", "good-cel", "missing", "wrong-kind", "on-backend")}
    assert {n: (c["status"], c["reason"]) for n, c in got.items()} == {
        "bad-cel": ("False", "InvalidCEL"), "good-cel": ("True", "Accepted"),
        "missing": ("False", "TargetNotFound"), "wrong-kind": ("False", "UnsupportedTargetKind"),
        "on-backend": ("True", "Accepted")}
    status = policy_status(graph, pkey("wrong-kind"), controller_name=CONTROLLER)
    assert status["ancestors"][0]["ancestorRef"] == {"group": "", "kind": "Service", "name": "mcp",
                                                     "namespace": "apps"}
    status = policy_status(graph, pkey("on-backend"), controller_name=CONTROLLER)
    assert status["ancestors"][0]["ancestorRef"]["kind"] == "XBackend"


def test_invalid_cel_is_a_structured_field_problem_and_the_condition_names_the_rule():
    from controlplane.api.base import FieldProblem
    from controlplane.graph.admission import cel_problem

    graph = graph_of(extra=[policy("bad-cel", cel="request.body.size() > 1")])
    [bad] = [p for p in graph.of_kind("XAccessPolicy") if p.name == "bad-cel"]
    invalid = cel_problem(bad)
    assert invalid.problem == FieldProblem(pkey("bad-cel"), "spec.rules[0].authorization.cel.expression",
                                           invalid.problem.message)
    assert invalid.problem.message.startswith("unsupported variable 'request.body'")
    condition_ = accepted(policy_status(graph, pkey("bad-cel"), controller_name=CONTROLLER))
    assert condition_["message"] == f"rule r: {invalid.problem.message}"


def test_other_controllers_ancestors_are_kept():
    graph = graph_of(extra=[policy("p")])
    theirs = {"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw",
                              "namespace": "apps"}, "controllerName": "example.com/other",
              "conditions": [{"type": "Accepted", "status": "False", "reason": "Nope", "message": "",
                              "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    status = policy_status(graph, pkey("p"), controller_name=CONTROLLER, previous={"ancestors": [theirs]})
    assert status["ancestors"][1] == theirs
    assert status["ancestors"][0]["controllerName"] == CONTROLLER


# --- gateways --------------------------------------------------------------------------------------------


def test_gateway_accepted_programmed_listeners_and_attached_routes():
    graph = graph_of(extra=[
        route("same-ns", rules=3),  # three rules: still one attached route
        route("other-ns", "team"),  # allowed on http (All) and web (All, no hostnames), not on https (Same)
        route("web-only", hostnames=["web.example.com"]),  # all three listeners
        route("elsewhere", hostnames=["other.example.com"]),  # https and http only (web's hostname differs)
    ])
    status = gateway_status(graph, GW, addresses=["10.0.0.7", "gw.example.com"], generation=3, programmed=True,
                            now=NOW)
    assert condition(status["conditions"], "Accepted") | {} == {
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "Gateway is accepted",
        "observedGeneration": 3, "lastTransitionTime": "2026-01-02T03:04:05Z"}
    assert condition(status["conditions"], "Programmed")["status"] == "True"
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.0.0.7"},
                                   {"type": "Hostname", "value": "gw.example.com"}]
    listeners = {ls["name"]: ls for ls in status["listeners"]}
    assert list(listeners) == ["https", "http", "web"]
    assert {n: ls["attachedRoutes"] for n, ls in listeners.items()} == {"https": 3, "http": 4, "web": 3}
    for ls in listeners.values():
        assert ls["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
        for type_ in ("Accepted", "Programmed", "ResolvedRefs"):
            assert condition(ls["conditions"], type_)["status"] == "True", (ls["name"], type_)
        assert condition(ls["conditions"], "Conflicted")["status"] == "False"


def test_gateway_not_programmed_until_published_and_unmanaged_gets_nothing():
    graph = graph_of()
    status = gateway_status(graph, GW, addresses=[], generation=3, programmed=False, now=NOW)
    programmed = condition(status["conditions"], "Programmed")
    assert (programmed["status"], programmed["reason"]) == ("False", "Pending")
    assert all(condition(ls["conditions"], "Programmed")["reason"] == "Pending" for ls in status["listeners"])
    assert status["addresses"] == []
    assert gateway_status(graph, ResourceKey("Gateway", "apps", "other-gw"), addresses=[], generation=1,
                          programmed=True) is None
    assert [g.name for g in managed_gateways(graph)] == ["gw"]


GATEWAY_TEMPLATE = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: apps, generation: 1}}
spec:
  gatewayClassName: ours
{body}
"""


def test_gateway_invalid_parameters_and_invalid_listeners():
    graph = graph_of(GATEWAY_TEMPLATE.format(name="params", body="""
  infrastructure: {parametersRef: {group: example.com, kind: Config, name: x}}
  listeners: [{name: http, protocol: HTTP, port: 80}]
"""), GATEWAY_TEMPLATE.format(name="mixed", body="""
  listeners:
    - {name: http, protocol: HTTP, port: 80}
    - {name: tcp, protocol: TCP, port: 9000}
    - {name: kinds, protocol: HTTP, port: 81, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}
    - {name: cert, protocol: HTTPS, port: 443,
       tls: {certificateRefs: [{name: tls, namespace: certs}]}}
"""), GATEWAY_TEMPLATE.format(name="all-bad", body="""
  listeners: [{name: tcp, protocol: TCP, port: 9000}]
"""), GATEWAY_TEMPLATE.format(name="clash", body="""
  listeners:
    - {name: a, protocol: HTTP, port: 80}
    - {name: b, protocol: HTTPS, port: 80}
"""))

    def status(name):
        return gateway_status(graph, ResourceKey("Gateway", "apps", name), addresses=[], generation=1,
                              programmed=True, now=NOW)

    params = status("params")
    assert (condition(params["conditions"], "Accepted")["status"],
            condition(params["conditions"], "Accepted")["reason"]) == ("False", "InvalidParameters")
    assert condition(params["conditions"], "Programmed")["reason"] == "Invalid"

    mixed = status("mixed")
    assert (condition(mixed["conditions"], "Accepted")["status"],
            condition(mixed["conditions"], "Accepted")["reason"]) == ("True", "ListenersNotValid")
    ls = {x["name"]: x for x in mixed["listeners"]}
    tcp = condition(ls["tcp"]["conditions"], "Accepted")
    assert (tcp["status"], tcp["reason"]) == ("False", "UnsupportedProtocol")
    assert ls["tcp"]["supportedKinds"] == []
    kinds = condition(ls["kinds"]["conditions"], "ResolvedRefs")
    assert (kinds["status"], kinds["reason"]) == ("False", "InvalidRouteKinds")
    assert ls["kinds"]["supportedKinds"] == []
    cert = condition(ls["cert"]["conditions"], "ResolvedRefs")
    assert (cert["status"], cert["reason"]) == ("False", "RefNotPermitted")
    assert condition(ls["cert"]["conditions"], "Programmed")["reason"] == "Invalid"
    assert condition(ls["http"]["conditions"], "Programmed")["status"] == "True"

    all_bad = status("all-bad")
    assert (condition(all_bad["conditions"], "Accepted")["status"],
            condition(all_bad["conditions"], "Accepted")["reason"]) == ("False", "ListenersNotValid")

    clash = status("clash")
    for listener in clash["listeners"]:
        conflicted = condition(listener["conditions"], "Conflicted")
        assert (conflicted["status"], conflicted["reason"]) == ("True", "ProtocolConflict")


# --- routes ----------------------------------------------------------------------------------------------


def route_condition(status: dict, type_: str, index: int = 0) -> tuple[str, str]:
    cond = condition(status["parents"][index]["conditions"], type_)
    return cond["status"], cond["reason"]


def test_route_accepted_and_resolved():
    graph = graph_of(extra=[route("r")])
    status = httproute_status(graph, rkey("r"), controller_name=CONTROLLER, generation=2, now=NOW)
    assert status["parents"][0]["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                 "name": "gw", "namespace": "apps"}
    assert status["parents"][0]["controllerName"] == CONTROLLER
    assert route_condition(status, "Accepted") == ("True", "Accepted")
    assert route_condition(status, "ResolvedRefs") == ("True", "ResolvedRefs")
    assert condition(status["parents"][0]["conditions"], "Accepted")["observedGeneration"] == 2


def test_route_from_another_namespace_is_not_allowed_by_a_same_namespace_listener():
    graph = graph_of(extra=[route("r", "team", parents=[
        {"name": "gw", "namespace": "apps", "sectionName": "https"}])])
    status = httproute_status(graph, rkey("r", "team"), controller_name=CONTROLLER, generation=2)
    assert route_condition(status, "Accepted") == ("False", "NotAllowedByListeners")


def test_route_no_matching_parent_and_no_matching_hostname():
    graph = graph_of(extra=[
        route("bad-section", parents=[{"name": "gw", "namespace": "apps", "sectionName": "nope"}]),
        route("bad-host", parents=[{"name": "gw", "namespace": "apps", "sectionName": "web"}],
              hostnames=["api.example.org"]),
        route("theirs", parents=[{"name": "other-gw"}]),
        route("nowhere", parents=[{"name": "missing"}])])
    assert route_condition(httproute_status(graph, rkey("bad-section"), controller_name=CONTROLLER),
                           "Accepted") == ("False", "NoMatchingParent")
    assert route_condition(httproute_status(graph, rkey("bad-host"), controller_name=CONTROLLER),
                           "Accepted") == ("False", "NoMatchingListenerHostname")
    # parents that are not Gateways of our class are not ours to report on
    assert httproute_status(graph, rkey("theirs"), controller_name=CONTROLLER) is None
    assert httproute_status(graph, rkey("nowhere"), controller_name=CONTROLLER) is None


def test_route_backend_not_found_invalid_kind_and_ref_not_permitted_then_granted():
    missing = route("missing", backends=[{"name": "ghost", "port": 80}])
    kind = route("kind", backends=[{"group": "example.com", "kind": "Bucket", "name": "b"}])
    cross = route("cross", backends=[{"name": "shared", "namespace": "backends", "port": 80}])
    graph = graph_of(extra=[missing, kind, cross])
    assert route_condition(httproute_status(graph, rkey("missing"), controller_name=CONTROLLER),
                           "ResolvedRefs") == ("False", "BackendNotFound")
    assert route_condition(httproute_status(graph, rkey("kind"), controller_name=CONTROLLER),
                           "ResolvedRefs") == ("False", "InvalidKind")
    status = httproute_status(graph, rkey("cross"), controller_name=CONTROLLER)
    assert route_condition(status, "ResolvedRefs") == ("False", "RefNotPermitted")
    assert route_condition(status, "Accepted") == ("True", "Accepted")  # attachment is independent of refs

    grant = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "allow-apps", "namespace": "backends"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    graph = graph_of(extra=[cross, grant])
    assert route_condition(httproute_status(graph, rkey("cross"), controller_name=CONTROLLER),
                           "ResolvedRefs") == ("True", "ResolvedRefs")


# --- transitions and the whole set -----------------------------------------------------------------------


def test_last_transition_time_is_stable_while_status_holds():
    graph = graph_of(extra=[route("r"), policy("p")])
    first = all_statuses(graph, controller_name=CONTROLLER, addresses={GW: ["10.0.0.7"]}, programmed={GW},
                         now=NOW)
    later = NOW + timedelta(hours=1)
    again = all_statuses(graph, controller_name=CONTROLLER, addresses={GW: ["10.0.0.7"]}, programmed={GW},
                         previous=first, now=later)
    assert again == first  # identical: the writer sends nothing

    # the Gateway loses Programmed: only the conditions whose status flipped get the new time
    flipped = all_statuses(graph, controller_name=CONTROLLER, addresses={GW: ["10.0.0.7"]}, programmed=(),
                           previous=first, now=later)
    gw = flipped[("Gateway", "apps", "gw")]
    assert condition(gw["conditions"], "Programmed")["lastTransitionTime"] == "2026-01-02T04:04:05Z"
    assert condition(gw["conditions"], "Accepted")["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert flipped[("XAccessPolicy", "apps", "p")] == first[("XAccessPolicy", "apps", "p")]

    # by default the previous status is the one the object carries, as read from the cluster
    graph_with_status = graph_of(extra=[dict(policy("p"), status=first[("XAccessPolicy", "apps", "p")])])
    assert policy_status(graph_with_status, pkey("p"), controller_name=CONTROLLER, now=later) == \
        first[("XAccessPolicy", "apps", "p")]


def test_all_statuses_covers_only_our_objects():
    graph = graph_of(extra=[route("r"), route("theirs", parents=[{"name": "other-gw"}]), policy("p")])
    statuses = all_statuses(graph, controller_name=CONTROLLER, now=NOW)
    assert set(statuses) == {("GatewayClass", "", "ours"), ("Gateway", "apps", "gw"),
                             ("HTTPRoute", "apps", "r"), ("XAccessPolicy", "apps", "p")}
    assert condition(statuses[("GatewayClass", "", "ours")]["conditions"], "Accepted")["status"] == "True"
    assert condition(statuses[("Gateway", "apps", "gw")]["conditions"], "Programmed")["status"] == "False"
    assert condition(statuses[("Gateway", "apps", "gw")]["conditions"], "Accepted")["observedGeneration"] == 3


# --- rate limit policies -----------------------------------------------------------------------------------


def _rate_limit_policy(name: str, targets: list[dict]) -> dict:
    return {"apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": name, "namespace": "apps", "generation": 4},
            "spec": {"targetRefs": targets, "limits": [{"name": "l", "requests": 3, "per": "Minute"}]}}


def test_rate_limit_policy_is_accepted_per_target_and_beside_a_same_named_access_policy():
    graph = graph_of(extra=[
        _rate_limit_policy("p", [XBACKEND_TARGET]),
        _rate_limit_policy("lost", [{**XBACKEND_TARGET, "name": "missing"}]),
        _rate_limit_policy("wrong-kind", [{"group": "", "kind": "Service", "name": "mcp"}]),
        policy("p", targets=[XBACKEND_TARGET])])
    key = ResourceKey("RateLimitPolicy", "apps", "p")
    status = policy_status(graph, key, controller_name=CONTROLLER, now=NOW)
    assert status["ancestors"][0]["ancestorRef"] == {**XBACKEND_TARGET, "namespace": "apps"}
    assert accepted(status) | {"message": ""} == {
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 4,
        "lastTransitionTime": "2026-01-02T03:04:05Z"}
    lost = policy_status(graph, ResourceKey("RateLimitPolicy", "apps", "lost"), controller_name=CONTROLLER)
    assert (accepted(lost)["status"], accepted(lost)["reason"]) == ("False", "TargetNotFound")
    wrong = policy_status(graph, ResourceKey("RateLimitPolicy", "apps", "wrong-kind"), controller_name=CONTROLLER)
    assert (accepted(wrong)["status"], accepted(wrong)["reason"]) == ("False", "UnsupportedTargetKind")
    everything = all_statuses(graph, controller_name=CONTROLLER, now=NOW)
    assert ("RateLimitPolicy", "apps", "p") in everything and ("XAccessPolicy", "apps", "p") in everything
    assert accepted(everything[("XAccessPolicy", "apps", "p")])["status"] == "True"
