"""The hand-written RBACPerRoute wrapper is byte-for-byte betterproto2's, on generated messages."""

from __future__ import annotations

import copy

from envoy_data_plane.envoy.config.rbac.v3 import Policy
from envoy_data_plane.envoy.extensions.filters.http.rbac.v3 import RbacPerRoute
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.xds.rbac_encoding import ACTIONS, RBAC_PER_ROUTE_TYPE, encodable, encode_rbac_per_route

names = st.text(min_size=1, max_size=20)
principal = st.one_of(st.just({"any": True}),
                      names.map(lambda n: {"authenticated": {"principalName": {"exact": n}}}))
permission = st.one_of(st.just({"any": True}), names.map(lambda n: {"header": {"name": n, "presentMatch": True}}),
                       st.integers(0, 65535).map(lambda p: {"destinationPort": p}))
policy = st.fixed_dictionaries({"permissions": st.lists(permission, max_size=3),
                                "principals": st.lists(principal, max_size=3)})
config = st.fixed_dictionaries({}, optional={"action": st.sampled_from(sorted(ACTIONS)),
                                             "policies": st.dictionaries(names, policy, max_size=4)})
rbac = st.fixed_dictionaries({}, optional={"rules": config, "shadowRules": config, "rulesStatPrefix": st.text(max_size=8),
                                           "shadowRulesStatPrefix": st.text(max_size=8)})
per_route = st.fixed_dictionaries({"@type": st.just(RBAC_PER_ROUTE_TYPE)}, optional={"rbac": rbac})


def betterproto2_policy(payload: dict) -> bytes:
    return bytes(Policy.from_dict(copy.deepcopy(payload)))


@settings(max_examples=300, deadline=None)
@given(per_route)
def test_equals_betterproto2_byte_for_byte(payload):
    assert encodable(payload)
    expected = bytes(RbacPerRoute.from_dict({k: v for k, v in copy.deepcopy(payload).items() if k != "@type"}))
    assert encode_rbac_per_route(payload, betterproto2_policy) == expected


def test_fields_it_does_not_write_are_left_to_betterproto2():
    assert not encodable({"rbac": {"matcher": {}}})
    assert not encodable({"rbac": {"rules": {"action": "ALLOW", "auditLoggingOptions": {}}}})
