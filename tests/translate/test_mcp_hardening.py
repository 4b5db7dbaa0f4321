"""The MCP filter is configured fail closed, and every Allow policy refuses a body parsed only in part.

Through real Envoy these shapes are exercised in tests/integration/test_mcp_bypass.py; here the
translation itself: the listener's fixed filter options, the per-route PASS_THROUGH for routes that
reach no XBackend, and the `is_exceeding_limit` guard in every RBAC policy.
"""

from __future__ import annotations

from controlplane.graph.request import CLIENT_RESPONSE
from controlplane.translate.features.mcp import GROUP_KEY, MAX_REQUEST_BODY_BYTES, MCP_FILTER, NO_METHOD_GROUP
from controlplane.translate.features.rbac import client_response, fully_parsed
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds import resources as types
from tests.translate.test_gateway_translation import QUICKSTART_GW, _gateway_api_graph, quickstart_graph


def _of_type(resources, type_url):
    return [r.payload for r in resources if r.type_url == type_url]


def _mcp_filter(listener: dict) -> dict:
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return next(f["typedConfig"] for f in hcm["httpFilters"] if f["name"] == MCP_FILTER)


def _all_rbac_policies(route_config: dict):
    """Every RBAC policy (real rules) of every virtual host and weighted cluster."""
    for vhost in route_config["virtualHosts"]:
        configs = [vhost.get("typedPerFilterConfig", {})]
        for route in vhost["routes"]:
            configs += [c.get("typedPerFilterConfig", {})
                        for c in route.get("route", {}).get("weightedClusters", {}).get("clusters", [])]
        for config in configs:
            for name, value in config.items():
                if "rbac" in name:
                    yield from value["rbac"]["rules"]["policies"].values()


def test_the_listener_mcp_filter_is_fail_closed():
    listener = _of_type(gateway_resources(quickstart_graph(), QUICKSTART_GW, secrets=[]), types.LISTENER)[0]
    config = _mcp_filter(listener)
    assert config["trafficMode"] == "REJECT_NO_MCP"
    assert config["rejectDuplicateKeys"] is True
    assert 8192 < config["maxRequestBodySize"] == MAX_REQUEST_BODY_BYTES <= 10 * 1024 * 1024


def test_only_routes_without_an_xbackend_pass_non_mcp_traffic_through():
    graph, key = _gateway_api_graph()
    routes = [route for config in _of_type(gateway_resources(graph, key, secrets=[]), types.ROUTE)
              for vhost in config["virtualHosts"] for route in vhost["routes"]]
    modes = {}
    for route in routes:
        clusters = route.get("route", {}).get("weightedClusters", {}).get("clusters", [])
        kind = ("xbackend" if any(c["name"].startswith("xbackend/") for c in clusters)
                else "service" if clusters else "redirect")
        modes.setdefault(kind, set()).add(route.get("typedPerFilterConfig", {}).get(MCP_FILTER, {}).get("trafficMode"))
    assert modes == {"xbackend": {None}, "service": {"PASS_THROUGH"}, "redirect": {"PASS_THROUGH"}}


def test_every_allow_policy_refuses_a_body_parsed_in_part():
    for graph, key in [(quickstart_graph(), QUICKSTART_GW), _gateway_api_graph()]:
        policies = [p for config in _of_type(gateway_resources(graph, key, secrets=[]), types.ROUTE)
                    for p in _all_rbac_policies(config)]
        assert policies
        for policy in policies:
            (permission,) = policy["permissions"]
            parts = permission.get("andRules", {}).get("rules", [permission])
            assert fully_parsed() in parts, policy


def _matchers(rule):
    """Every node of an RBAC permission tree, each with the AND-ed siblings it sits among."""
    stack = [(rule, ())]
    while stack:
        node, siblings = stack.pop()
        yield node, siblings
        for key in ("andRules", "orRules"):
            children = node.get(key, {}).get("rules", [])
            stack += [(child, tuple(children) if key == "andRules" else ()) for child in children]
        if "notRule" in node:
            stack.append((node["notRule"], ()))


def test_a_client_response_is_admitted_only_without_a_method_inside():
    """The MCP filter names `{"result":{},"method":"tools/call",...}` `__jsonrpc_response` too, and the
    server runs the tool; only its group (`unknown` for a body without a method) tells the two apart."""
    listener = _of_type(gateway_resources(quickstart_graph(), QUICKSTART_GW, secrets=[]), types.LISTENER)[0]
    parser = _mcp_filter(listener)["parserConfig"]
    assert parser["groupMetadataKey"] == GROUP_KEY
    groups = {m["method"]: m["group"] for m in parser["methods"]}
    assert groups[CLIENT_RESPONSE] != NO_METHOD_GROUP and NO_METHOD_GROUP not in groups.values()
    seen = 0
    for config in _of_type(gateway_resources(quickstart_graph(), QUICKSTART_GW, secrets=[]), types.ROUTE):
        for policy in _all_rbac_policies(config):
            for node, siblings in _matchers(policy["permissions"][0]):
                matcher = node.get("sourcedMetadata", {}).get("metadataMatcher", {})
                if matcher.get("value", {}).get("stringMatch", {}).get("exact") == CLIENT_RESPONSE:
                    seen += 1
                    assert client_response() in [{"andRules": {"rules": list(siblings)}}], policy
    assert seen  # the quickstart's MATCH_BASE_PROTOCOL_METHODS rules admit responses
