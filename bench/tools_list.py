"""`make bench` section: what filtering tools/list per caller adds to a request, through a real Envoy.

One gateway (`LocalMesh` on the quickstart), two routes to the same MCP server: `/tools/mcp` to the
XBackend (the tools/list filter on, as every XBackend route has it) and `/plain/mcp` to the Service
behind it (a route that reaches no XBackend: the filter is off there, and so is the backend-level
RBAC, a few microseconds). The same caller sends N `tools/list` and N `tools/call get-sum` on each,
interleaved so that machine noise falls on both alike; p50/p99 and the on/off ratios are side by side.
A filtered list costs an ext_proc round trip to the control plane and a buffered body; a call should
cost nothing (Envoy's matcher skips the filter), which `ext_proc_streams` shows: one per list.
Figures are printed, never asserted.

`python -m bench.tools_list [N]`
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.convergence import percentiles
from tests.support.mcp_client import RawMcpClient
from tests.support.mesh import LocalMesh

CALLER = "research-agent"
PLAIN_RULE = ("  rules:\n", ("  rules:\n  - matches: [{path: {type: PathPrefix, value: /plain/mcp}}]\n"
                              "    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, "
                              "replacePrefixMatch: /mcp}}}]\n    backendRefs: [{name: everything, port: 3001}]\n"))


async def _until_served(url: str, cert) -> None:
    for _ in range(150):
        async with RawMcpClient(url, cert=cert) as client:
            if (await client.initialize()).http_status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} was never served")


async def _timed(send) -> float:
    started = time.perf_counter()
    answer = await send()
    elapsed = time.perf_counter() - started
    if answer.http_status != 200 or answer.error is not None:
        raise RuntimeError(f"unexpected answer: {answer.raw[:200]}")
    return elapsed


async def _measure(mesh: LocalMesh, requests: int) -> dict:
    cert = mesh.identity(CALLER)
    urls = {"on": mesh.url, "off": mesh.url.replace("/tools/mcp", "/plain/mcp")}
    await _until_served(urls["off"], cert)
    samples: dict[str, list[float]] = {f"{kind}_{mode}": [] for kind in ("list", "call") for mode in urls}
    clients = {mode: RawMcpClient(url, cert=cert) for mode, url in urls.items()}
    try:
        for client in clients.values():
            await client.initialize()
        streams_before = mesh.envoy.stat(_streams_stat(mesh))
        for _ in range(requests):
            for mode, client in clients.items():
                samples[f"list_{mode}"].append(await _timed(client.list_tools))
                samples[f"call_{mode}"].append(await _timed(lambda c=client: c.call_tool("get-sum", {"a": 1, "b": 2})))
        streams = mesh.envoy.stat(_streams_stat(mesh)) - streams_before
    finally:
        for client in clients.values():
            await client.aclose()
    return _report(samples, requests=requests, streams=streams)


def _streams_stat(mesh: LocalMesh) -> str:
    names = list(mesh.envoy.stats("ext_proc.tools_list.streams_started"))
    if len(names) != 1:
        raise RuntimeError(f"expected one tools/list filter's counter, found {names}")
    return names[0]


def _report(samples: dict[str, list[float]], *, requests: int, streams: int) -> dict:
    figures = {name: percentiles(values) for name, values in samples.items()}

    def ratio(kind: str, key: str) -> float | None:
        on, off = figures[f"{kind}_on"][key], figures[f"{kind}_off"][key]
        return round(on / off, 2) if on and off else None

    return {"requests_each": requests, "latency": figures,
            "list_on_over_off": {"p50": ratio("list", "p50_s"), "p99": ratio("list", "p99_s")},
            "call_on_over_off": {"p50": ratio("call", "p50_s"), "p99": ratio("call", "p99_s")},
            "ext_proc_streams": streams, "ext_proc_streams_expected": requests,
            "note": "off is a route to the Service (no tools/list filter, no backend-level RBAC)"}


def run(requests: int = 200) -> dict:
    with tempfile.TemporaryDirectory() as tmp, LocalMesh(Path(tmp)) as mesh:
        mesh.edit("10-gateway.yaml", *PLAIN_RULE)
        return asyncio.run(_measure(mesh, requests))


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50), indent=2))
