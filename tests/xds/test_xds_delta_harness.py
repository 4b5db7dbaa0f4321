"""The @incremental scenarios of ii/xds-test-harness, run as written against the real gRPC server.

Outlines and example tables are read at test time from
../shared/upstream-examples/xds-test-harness/{delta,subscribing,unsubcribing}.feature;
scenarios tagged @incremental and @aggregated run over DeltaAggregatedResources with a raw
delta client (unsubcribing.feature has no @incremental scenario today, so it contributes
none). Each step sentence maps to one action or check below.

Removal policy (R24): the harness expects a removed RDS/EDS resource to be announced in
removed_resources. This server deliberately does not do that by default for EDS/RDS/SDS
(delta.DEFAULT_POLICIES), so each scenario with the removal step runs twice: with the
default policy, where the step checks that LDS/CDS removals are announced and EDS/RDS
removals are *not*, and with every type set to announce deletions, where the step is the
harness's own check.

"The service never responds more than necessary" is checked as: after the client ACKed
what it expected, no further response arrives during a short quiet period.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.delta import ANNOUNCE_ALL, DEFAULT_POLICIES
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer, trust_node_id
from tests.xds.xds_delta_client import DeltaClient, DeltaReceived
from tests.xds.xds_features import Example, read_examples
from tests.xds.xds_helpers import res

HARNESS = Path(__file__).resolve().parents[3] / "shared" / "upstream-examples" / "xds-test-harness"
FEATURES = ("delta.feature", "subscribing.feature", "unsubcribing.feature")
TYPES = {"CDS": CLUSTER, "EDS": ENDPOINT, "LDS": LISTENER, "RDS": ROUTE}
QUIET = 0.3
REMOVAL_STEP = "receives notice that resource"


def _examples() -> list:
    if not HARNESS.is_dir():
        print(f"skipping the delta harness scenarios: {HARNESS} not present")
        return [pytest.param(None, "default", marks=pytest.mark.skip(reason=f"{HARNESS} not present"))]
    found = [
        e for f in FEATURES for e in read_examples(HARNESS / f) if {"@incremental", "@aggregated"} <= e.tags
    ]
    params = []
    for example in found:
        params.append(pytest.param(example, "default", id=f"{example.id} [default policy]"))
        if any(REMOVAL_STEP in step for step in example.steps):
            params.append(pytest.param(example, "announce-all", id=f"{example.id} [announce-all policy]"))
    return params


class DeltaScenario:
    """The world (resource versions per type), the delta client, and the step vocabulary."""

    def __init__(self, server: XdsServer, client: DeltaClient, policy: str) -> None:
        self.server, self.client, self.policy = server, client, policy
        self.world: dict[str, dict[str, str]] = {}
        self.buffer: list[DeltaReceived] = []
        self.history: dict[str, list[DeltaReceived]] = {}

    def publish(self) -> None:
        snapshot = Snapshot(res(t, n, v) for t, names in self.world.items() for n, v in names.items())
        self.server.cache.set_snapshot("test-node", snapshot)

    def announces_deletions(self, type_url: str) -> bool:
        return self.policy == "announce-all" or DEFAULT_POLICIES[type_url].announce_deleted

    async def next_of(self, type_url: str) -> DeltaReceived:
        """The next response of a type (others that arrive first are kept for their own steps)."""
        for i, got in enumerate(self.buffer):
            if got.type_url == type_url:
                return self.buffer.pop(i)
        while True:
            got = await self.client.recv()
            self.client.ack(got)  # a client ACKs every response (delta), in arrival order
            self.history.setdefault(got.type_url, []).append(got)
            if got.type_url == type_url:
                return got
            self.buffer.append(got)

    async def settle(self, type_url: str, names: set[str]) -> None:
        """Wait until the server has applied a request that expects no response."""
        want = tuple(sorted(names))
        for _ in range(300):
            types = {t.type_url: t for c in self.server.connections() for t in c.types}
            if type_url in types and types[type_url].subscribed == want:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"server never applied subscription {want} for {type_url}")

    # --- steps ---------------------------------------------------------------------------------
    async def setup(self, services: str, resources: str, version: str) -> None:
        for service in services.split(","):
            self.world[TYPES[service]] = {n: version for n in resources.split(",")}
        self.publish()

    async def subscribe(self, service: str, names: list[str]) -> None:
        self.client.send(TYPES[service], names)

    async def unsubscribe(self, name: str, service: str) -> None:
        type_url = TYPES[service]
        subscribed = {
            t.subscribed for c in self.server.connections() for t in c.types if t.type_url == type_url
        }
        remaining = set(next(iter(subscribed))) - {name}
        self.client.send(type_url, unsubscribe=[name])
        await self.settle(type_url, remaining)

    async def receive(self, names: str, version: str, service: str) -> None:
        type_url = TYPES[service]
        expected = set(names.split(","))
        got_names: set[str] = set()
        while got_names != expected:
            got = await self.next_of(type_url)
            assert set(got.names) <= expected, f"unexpected resources {got.names}, wanted {expected}"
            assert not (set(got.removed) & expected)
            for name in got.names:
                want = res(type_url, name, version)
                assert got.bodies[name] == want.body and got.versions[name] == want.version
            got_names |= set(got.names)

    async def no_other_same_version_or_nonce(self, service: str, name: str, *, check_version: bool) -> None:
        type_url = TYPES[service]
        carrying = [g for g in self.history[type_url] if name in g.versions]
        assert carrying, f"{name} was never received"
        last = carrying[-1]
        assert last.names == [name], f"response {last.nonce} carried {last.names}, not only {name}"
        if check_version:
            others = {v for g in self.history[type_url] for n, v in g.versions.items() if n != name}
            assert last.versions[name] not in others

    async def removal_notice(self, name: str, service: str) -> None:
        type_url = TYPES[service]
        if self.announces_deletions(type_url):
            got = await self.next_of(type_url)
            assert got.removed == [name] and got.names == []
        else:  # R24: EDS/RDS deletions are not announced by default; the client keeps what it had
            await self.quiet()

    async def update(self, name: str, service: str, version: str) -> None:
        self.world[TYPES[service]][name] = version
        self.publish()

    async def remove(self, name: str, service: str) -> None:
        del self.world[TYPES[service]][name]
        self.publish()

    async def not_received(self, name: str, service: str, version: str) -> None:
        await self.quiet()

    async def quiet(self) -> None:
        assert not self.buffer, f"unconsumed responses: {[(g.type_url, g.names) for g in self.buffer]}"
        await self.client.expect_quiet(QUIET)


STEPS = [
    (
        r"a target setup with service (\w+), resources ([\w,]+), and starting version (\w+)",
        lambda s, m: s.setup(m[1], m[2], m[3]),
    ),
    (
        (
            r"a target setup with multiple services ([\w,]+), each with resources ([\w,]+),"
            r" and starting version (\w+)"
        ),
        lambda s, m: s.setup(m[1], m[2], m[3]),
    ),
    (r"the Client does a wildcard subscription to (\w+)", lambda s, m: s.subscribe(m[1], ["*"])),
    (
        r"the Client subscribes to resources ([\w,]+) for (\w+)",
        lambda s, m: s.subscribe(m[2], m[1].split(",")),
    ),
    (
        r"the Client receives the resources ([\w,]+) and version (\w+) for (\w+)",
        lambda s, m: s.receive(m[1], m[2], m[3]),
    ),
    (r"the service never responds more than necessary", lambda s, m: s.quiet()),
    (
        r"the resource (\w+) of service (\w+) is updated to version (\w+)",
        lambda s, m: s.update(m[1], m[2], m[3]),
    ),
    (r"the resource (\w+) is added to the (\w+) with version (\w+)", lambda s, m: s.update(m[1], m[2], m[3])),
    (r"the resource (\w+) is removed from the (\w+)", lambda s, m: s.remove(m[1], m[2])),
    (
        r"for service (\w+), no resource other than (\w+) has same version or nonce",
        lambda s, m: s.no_other_same_version_or_nonce(m[1], m[2], check_version=True),
    ),
    (
        r"for service (\w+), no resource other than (\w+) has same nonce",
        lambda s, m: s.no_other_same_version_or_nonce(m[1], m[2], check_version=False),
    ),
    (
        r"the Client receives notice that resource (\w+) was removed for service (\w+)",
        lambda s, m: s.removal_notice(m[1], m[2]),
    ),
    (
        r"the Client unsubscribes from resource (\w+) for service (\w+)",
        lambda s, m: s.unsubscribe(m[1], m[2]),
    ),
    (
        r"the client does not receive resource (\w+) of service (\w+) at version (\w+)",
        lambda s, m: s.not_received(m[1], m[2], m[3]),
    ),
]


@pytest.mark.parametrize(("example", "policy"), _examples())
async def test_delta_harness_scenario(example: Example, policy: str):
    policies = {t: ANNOUNCE_ALL for t in TYPES.values()} if policy == "announce-all" else None
    server = XdsServer(cache=SnapshotCache(), authorize=trust_node_id, delta_policies=policies)
    await server.start("127.0.0.1:0")
    try:
        async with DeltaClient(f"127.0.0.1:{server.port}") as client:
            scenario = DeltaScenario(server, client, policy)
            for step in example.steps:
                for pattern, action in STEPS:
                    if match := re.fullmatch(pattern, step):
                        await action(scenario, match)
                        break
                else:
                    raise AssertionError(f"no implementation for step: {step!r}")
    finally:
        await server.stop(None)


def test_the_delta_scenarios_were_found():
    if not HARNESS.is_dir():
        pytest.skip(f"{HARNESS} not present")
    ids = [p.id for p in _examples()]
    # 24 example rows in delta.feature, 2 in subscribing.feature, none in unsubcribing.feature;
    # the 4 rows of the removal outline also run with the announce-all policy.
    assert sum("[default policy]" in i for i in ids) == 26
    assert sum("[announce-all policy]" in i for i in ids) == 4
