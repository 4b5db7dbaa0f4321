"""The SotW scenarios of ii/xds-test-harness, run as written against the real gRPC server.

The outlines and example tables are read at test time from
../shared/upstream-examples/xds-test-harness/{subscribing,unsubcribing}.feature (relative
to the repository); each step sentence maps to one action or check below. Only
scenarios tagged @sotw and @aggregated run: this server speaks ADS.

"The service never responds more than necessary" is checked as: after the client ACKed
what it expected, no further response arrives during a short quiet period.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.adsclient import AdsClient
from tests.xds.xds_features import Example, read_examples
from tests.xds.xds_helpers import res

HARNESS = Path(__file__).resolve().parents[3] / "shared" / "upstream-examples" / "xds-test-harness"
FEATURES = ("subscribing.feature", "unsubcribing.feature")
TYPES = {"CDS": CLUSTER, "EDS": ENDPOINT, "LDS": LISTENER, "RDS": ROUTE}
QUIET = 0.3


def _examples() -> list:
    if not HARNESS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{HARNESS} not present"))]
    found = [e for f in FEATURES for e in read_examples(HARNESS / f) if {"@sotw", "@aggregated"} <= e.tags]
    return [pytest.param(e, id=e.id) for e in found]


class Scenario:
    """The world (resource versions per type), the client, and the step vocabulary."""

    def __init__(self, server, client: AdsClient) -> None:
        self.server, self.client = server, client
        self.world: dict[str, dict[str, str]] = {}
        self.subscribed: dict[str, list[str]] = {}
        self.seen_versions: dict[tuple[str, str], str] = {}  # (type, harness version) -> version_info

    def publish(self) -> None:
        snapshot = Snapshot(res(t, n, v) for t, names in self.world.items() for n, v in names.items())
        self.server.cache.set_snapshot("test-node", snapshot)

    async def settle(self, type_url: str, names: list[str]) -> None:
        """Wait until the server has applied a request that expects no response."""
        want = tuple(sorted(n for n in names if n != "*"))
        for _ in range(200):
            conns = self.server.connections()
            types = {t.type_url: t for c in conns for t in c.types}
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
        self.subscribed[TYPES[service]] = names
        self.client.send(TYPES[service], names)

    async def receive(self, names: str, version: str, service: str) -> None:
        type_url = TYPES[service]
        got = await self.client.recv()
        assert got.type_url == type_url
        assert sorted(got.names) == sorted(names.split(","))  # all of them, in this single response
        assert len(got.names) == len(set(got.names))
        for name in got.names:
            assert got.bodies[name] == res(type_url, name, self.world[type_url][name]).body
        known = self.seen_versions.setdefault((type_url, version), got.version_info)
        assert known == got.version_info
        others = {v for (t, h), v in self.seen_versions.items() if t == type_url and h != version}
        assert got.version_info not in others
        self.client.send(type_url, self.subscribed[type_url])  # ACK with the current subscription

    async def update(self, name: str, service: str, version: str) -> None:
        self.world[TYPES[service]][name] = version
        self.publish()

    async def resubscribe(self, names: list[str], service: str) -> None:
        await self.subscribe(service, names)
        await self.settle(TYPES[service], names)

    async def quiet(self) -> None:
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
    (r"the Client does a wildcard subscription to (\w+)", lambda s, m: s.subscribe(m[1], [])),
    (
        r"the Client subscribes to resources ([\w,]+) for (\w+)",
        lambda s, m: s.subscribe(m[2], m[1].split(",")),
    ),
    (
        r"the Client receives the resources ([\w,]+) and version (\w+) for (\w+)",
        lambda s, m: s.receive(m[1], m[2], m[3]),
    ),
    (
        r"the Client receives only the resource (\w+) and version (\w+) for the service (\w+)",
        lambda s, m: s.receive(m[1], m[2], m[3]),
    ),
    (
        r"the resources ([\w,]+) and version (\w+) for (\w+) came in a single response",
        lambda s, m: asyncio.sleep(0),
    ),  # checked by the receive step: one response held them all
    (r"the service never responds more than necessary", lambda s, m: s.quiet()),
    (
        r"the resource (\w+) of service (\w+) is updated to version (\w+)",
        lambda s, m: s.update(m[1], m[2], m[3]),
    ),
    (r"the resource (\w+) is added to the (\w+) with version (\w+)", lambda s, m: s.update(m[1], m[2], m[3])),
    (
        r"the Client updates subscription to a resource\((\w+)\) of (\w+) with version (\w+)",
        lambda s, m: s.resubscribe([m[1]], m[2]),
    ),
    (r"the Client unsubscribes from all resources for (\w+)", lambda s, m: s.resubscribe([], m[1])),
    (r"the Client does not receive any message from (\w+)", lambda s, m: s.quiet()),
]


@pytest.mark.parametrize("example", _examples())
async def test_harness_scenario(example: Example, server, connect):
    async with connect() as client:
        scenario = Scenario(server, client)
        for step in example.steps:
            for pattern, action in STEPS:
                if match := re.fullmatch(pattern, step):
                    await action(scenario, match)
                    break
            else:
                raise AssertionError(f"no implementation for step: {step!r}")
