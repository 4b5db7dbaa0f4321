"""features/otel.py and its input, serve's --otel-collector: off by default, on only where policy is enforced,
and a hostile or half-written HOST:PORT refused in one line before anything starts."""

from __future__ import annotations

import pytest

from controlplane.api.base import ResourceKey
from controlplane.cli import main as cli
from controlplane.graph.view import GatewayView, ListenerView
from controlplane.translate.context import (
    SIDECAR_INBOUND,
    SIDECAR_OUTBOUND,
    OtelCollector,
    PortContext,
    ProxyContext,
)
from controlplane.translate.features import FEATURES
from controlplane.translate.features.otel import ATTRIBUTES, OTEL_CLUSTER, OpenTelemetry
from controlplane.translate.listener import http_connection_manager

GW = ResourceKey("Gateway", "quickstart", "agent-gateway")


def _port(role: str, collector: OtelCollector | None) -> PortContext:
    view = GatewayView(GW, (ListenerView("https", 443, True, (), ()),))
    proxy = ProxyContext(role, view, (), collector)
    return PortContext(proxy, 443, True, view.listeners)


@pytest.mark.parametrize(("text", "host", "port"), [
    ("10.0.0.9:4317", "10.0.0.9", 4317),
    ("otel-collector.observability.svc:4317", "otel-collector.observability.svc", 4317),
    ("[fd00::1]:4317", "fd00::1", 4317),
    ("Collector.:1", "Collector.", 1),
])
def test_a_collector_address_parses(text, host, port):
    collector = OtelCollector.parse(text)
    assert (collector.host, collector.port) == (host, port)


@pytest.mark.parametrize("text", [
    "", ":", "collector", "collector:", ":4317", "collector:0", "collector:65536", "collector:43x7",
    "collector:-1", "http://collector:4317", "collector:4317/v1/traces", "col lector:4317", "fd00::1:4317x",
    "[collector]:4317", "[fd00::1:4317", "-bad-.svc:4317", "a..b:4317", "x" * 64 + ".svc:4317", "coll\nector:4317",
    "collector:4317\n",
])
def test_a_hostile_or_half_written_address_is_refused_in_one_line(text):
    with pytest.raises(ValueError) as raised:
        OtelCollector.parse(text)
    assert "\n" not in str(raised.value).replace("\\n", "")


def test_the_cli_refuses_a_bad_flag_with_a_usage_error_before_serving(tmp_path, capsys):
    code = cli(["serve", "--config", str(tmp_path), "--state-dir", str(tmp_path / "state"),
                "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--otel-collector", "collector"])
    err = capsys.readouterr().err
    assert code == 2 and "--otel-collector" in err and len(err.strip().splitlines()) == 1, err


def test_off_by_default_nothing_changes():
    hcm = http_connection_manager(_port("gateway", None), FEATURES)
    assert "tracing" not in hcm
    assert [log["name"] for log in hcm["accessLog"]] == ["envoy.access_loggers.stdout",
                                                         "envoy.access_loggers.http_grpc"]
    assert OpenTelemetry().resources(_port("gateway", None).proxy) == []


@pytest.mark.parametrize("role", ["gateway", SIDECAR_INBOUND, "egress"])
def test_every_enforcing_proxy_traces_and_logs_beside_the_other_loggers(role):
    port = _port(role, OtelCollector.parse("10.0.0.9:4317"))
    hcm = http_connection_manager(port, FEATURES)
    assert [log["name"] for log in hcm["accessLog"]] == ["envoy.access_loggers.stdout",
                                                         "envoy.access_loggers.http_grpc",
                                                         "envoy.access_loggers.open_telemetry"]
    provider = hcm["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typedConfig"]["grpcService"]["envoyGrpc"]["clusterName"] == OTEL_CLUSTER
    assert {tag["tag"] for tag in hcm["tracing"]["customTags"]} == set(ATTRIBUTES)
    [cluster] = OpenTelemetry().resources(port.proxy)
    assert cluster.name == OTEL_CLUSTER and cluster.payload["type"] == "STATIC"


def test_an_agents_outbound_side_never_traces():
    port = _port(SIDECAR_OUTBOUND, OtelCollector.parse("otel.svc:4317"))
    assert "tracing" not in http_connection_manager(port, FEATURES)
    assert OpenTelemetry().resources(port.proxy) == []


def test_the_semantic_convention_names_are_used_where_they_exist():
    assert {"mcp.method.name", "gen_ai.tool.name", "mcp.session.id", "jsonrpc.request.id",
            "mcp.resource.uri"} <= set(ATTRIBUTES)
    assert all(name.startswith(("mcp.", "gen_ai.", "jsonrpc.", "http.", "url.", "agentic.")) for name in ATTRIBUTES)
