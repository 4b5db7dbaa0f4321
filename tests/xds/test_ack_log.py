"""Each proxy's ACK/NACK in the log: one info line per (type, version, outcome), with the milliseconds."""

from __future__ import annotations

import logging
import re
import time

from controlplane.xds.ack_log import AckLog
from controlplane.xds.resources import LISTENER
from tests.xds.xds_helpers import snapshot_of, wait_for_status

ACKS = "controlplane.xds.acks"


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACKS and r.levelno == logging.INFO]


def test_a_repeated_outcome_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger=ACKS)
    acks = AckLog("gateway~quickstart/agent-gateway")
    assert acks.outcome("ACK", "lds", "v1", time.monotonic())
    assert not acks.outcome("ACK", "lds", "v1", time.monotonic())  # a re-ACK of the same version: quiet
    assert acks.outcome("ACK", "rds", "v1", None)  # another type is its own line
    assert acks.outcome("NACK", "lds", "v2", time.monotonic(), "malformed")
    assert acks.outcome("ACK", "lds", "v1", None)  # back to v1 after v2: a change, logged again
    [first, rds, nack, back] = lines(caplog)
    assert re.fullmatch(r"gateway~quickstart/agent-gateway ACK lds version v1 in \d+ ms", first)
    assert rds == "gateway~quickstart/agent-gateway ACK rds version v1"  # no push stamp: no time
    assert re.fullmatch(r"\S+ NACK lds version v2 in \d+ ms: malformed", nack)
    assert back.endswith("ACK lds version v1")


async def test_the_stream_logs_each_proxys_ack_and_nack_once(server, connect, cache, caplog):
    caplog.set_level(logging.INFO, logger=ACKS)
    cache.set_snapshot("test-node", snapshot_of({LISTENER: "L"}))
    async with connect() as client:
        client.send(LISTENER)
        good = await client.recv()
        client.send(LISTENER)  # ACK
        await wait_for_status(server, LISTENER, "SYNCED")
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L"}, version="bad"))
        bad = await client.recv()
        for _ in range(3):
            client.nack(LISTENER, error="malformed IP address")
        await client.expect_quiet(0.3)
    assert [re.sub(r" in \d+ ms", " in N ms", line) for line in lines(caplog)] == [
        f"test-node ACK lds version {good.version_info} in N ms",
        f"test-node NACK lds version {bad.version_info} in N ms: malformed IP address",
    ]
