"""Start-up against an API server not yet reachable: the CA Secret read is retried with backoff where the
cause can pass (refused, 5xx), each attempt logged with the next delay, and fails at once where it cannot."""

from __future__ import annotations

import asyncio
import logging

import pytest

from controlplane.controller import Settings
from controlplane.identity.ca import CaStateError
from controlplane.kube.ca_secret import SECRET
from controlplane.kube.client import ApiError, is_transient
from controlplane.kube.kinds import ALL_KINDS, LEASE
from controlplane.kube.serve import ClusterOptions, cluster_control_plane
from controlplane.kube.startup import ApiUnreachable, StartupRetry
from controlplane.kube.watch import Backoff
from tests.kube.fakeapi import FakeApiServer
from tests.support.envoy import free_port

FAST = Backoff(initial=0.05, maximum=0.2, jitter=0.0)


def options(kubeconfig, *, give_up_after: float | None = 20.0) -> ClusterOptions:
    return ClusterOptions(in_cluster=False, kubeconfig=str(kubeconfig), context=None, namespace="agentic-system",
                          service_account="agentic-cp", ca_secret="agentic-cp-ca", proxy_image=None,
                          xds_service="127.0.0.1:15010", startup=StartupRetry(backoff=FAST, give_up_after=give_up_after))


def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path / "state", trust_domain="cluster.local", xds_address="127.0.0.1:0",
                    admin_address="127.0.0.1:0")


def retry_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "controlplane.kube.startup"]


async def test_an_api_server_started_late_is_waited_for_with_one_line_per_attempt(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="controlplane.kube.startup")
    port = free_port()
    server = FakeApiServer(kinds=(*ALL_KINDS, LEASE, SECRET))
    server.url = f"http://127.0.0.1:{port}"
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    starting = asyncio.create_task(cluster_control_plane(options(kubeconfig), settings(tmp_path)))
    try:
        await asyncio.sleep(0.5)
        assert not starting.done()  # still waiting, not failed
        await server.start(port=port)
        control_plane = await asyncio.wait_for(starting, 20)
        assert control_plane.certificates is not None
        assert server.get(SECRET, "agentic-system", "agentic-cp-ca") is not None  # created once it answered
    finally:
        starting.cancel()
        await server.stop()
    lines = retry_lines(caplog)
    assert lines and all("reading the CA Secret agentic-system/agentic-cp-ca: API server not reachable" in line
                         and "next in" in line and "giving up in" in line for line in lines), lines
    assert all("\n" not in line for line in lines)


async def test_a_5xx_is_retried_and_a_403_fails_at_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="controlplane.kube.startup")
    server = FakeApiServer(kinds=(*ALL_KINDS, LEASE, SECRET))
    await server.start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        server.inject(method="GET", path_contains="/secrets/", status=503, times=2)
        await cluster_control_plane(options(kubeconfig), settings(tmp_path))
        assert len(retry_lines(caplog)) == 2 and "503" in retry_lines(caplog)[0]

        caplog.clear()
        server.forbid("secrets")
        with pytest.raises(CaStateError, match="403"):
            await cluster_control_plane(options(kubeconfig, give_up_after=None), settings(tmp_path))
        assert retry_lines(caplog) == []  # never retried: waiting does not grant RBAC
    finally:
        await server.stop()


async def test_it_gives_up_after_its_budget_in_one_line(tmp_path):
    server = FakeApiServer(kinds=(*ALL_KINDS, LEASE, SECRET))
    server.url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(ApiUnreachable, match=r"did not answer within 0.5 s \(\d+ attempts; last: .*--startup-timeout"):
        await cluster_control_plane(options(kubeconfig, give_up_after=0.5), settings(tmp_path))


@pytest.mark.parametrize(("status", "transient"), [(500, True), (503, True), (429, True), (401, False),
                                                   (403, False), (404, False), (409, False)])
def test_which_answers_can_pass(status, transient):
    assert is_transient(ApiError(status=status)) is transient
    assert is_transient(ConnectionRefusedError()) and not is_transient(ValueError("bad"))


