"""The bench measures what it says: a valid mesh of the stated size, clients that speak real ADS, every
stream converging on the edit. Figures are printed by `make bench`, never asserted here."""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import convergence, simclient
from bench.pipeline import Mesh, sotw_bytes
from controlplane.xds import resources as types
from controlplane.xds.wire import encode_discovery_response


def test_the_mesh_has_the_stated_size_and_every_policy_is_accepted(tmp_path):
    mesh = Mesh(tmp_path / "mesh", 60)
    mesh.cold_build()
    assert (mesh.policies, mesh.backends) == (20, 6)
    policies = mesh.graph.of_kind("XAccessPolicy")
    assert len(policies) == 20 and sum(len(p.spec.rules) for p in policies) == 60
    conditions = [c for backend in mesh.graph.of_kind("XBackend") for c in mesh.graph.admission_for(backend.key).values()]
    assert len(conditions) == 20 and all(c.accepted for c in conditions)


def test_an_edit_changes_only_the_route_configuration(tmp_path):
    mesh = Mesh(tmp_path / "mesh", 30)
    mesh.cold_build()
    before = mesh.snapshot()
    edit = mesh.edit(0)
    after = mesh.snapshot()
    moved = [t for t in after.type_urls if before.version(t) != after.version(t)]
    assert moved == [types.ROUTE]
    assert edit["bytes_per_proxy"] == sotw_bytes(before, after) > 0


@settings(max_examples=100, deadline=None)
@given(type_url=st.text(max_size=30), names=st.lists(st.text(max_size=10), max_size=4), version=st.text(max_size=10),
       nonce=st.text(max_size=10), node_id=st.text(max_size=10))
def test_client_requests_are_byte_for_byte_betterproto2s(type_url, names, version, nonce, node_id):
    expected = DiscoveryRequest(version_info=version, node=Node(id=node_id) if node_id else None,
                                resource_names=names, type_url=type_url, response_nonce=nonce)
    assert simclient.request(type_url=type_url, names=names, version=version, nonce=nonce,
                             node_id=node_id) == bytes(expected)


def test_client_reads_version_type_and_nonce_of_a_response():
    wire = encode_discovery_response(version_info="v7", resources=[b"\x0a\x01x"], type_url=types.ROUTE,
                                     nonce="n3", control_plane_id="cp")
    fields = simclient.top_fields(wire)
    assert (fields[1], fields[4], fields[5]) == (b"v7", types.ROUTE.encode(), b"n3")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["real", "raw"])
def test_every_simulated_stream_acks_each_edit(mode):
    result = convergence.run(mode, 30, 4, edits=2, timeout=60)
    assert result["connected"] == 4
    assert result["acks"] == result["expected_acks"] == 8
