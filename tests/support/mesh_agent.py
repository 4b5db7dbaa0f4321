"""An agent that knows nothing of the mesh: plain `http://<service>/mcp`, no proxy, no certificate.

Run inside an agent pod's network namespace (e2e/local/); it opens an MCP session, calls each tool named
on the command line and prints one JSON line per step (`step`, `http_status`, `text`, `error`), so the
test that started it reads what the agent saw. Connection failures are printed, not raised.

    python -m tests.support.mesh_agent http://weather.tools.svc.cluster.local:8080/mcp get-sum echo
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx2

from tests.support.mcp_client import RawMcpClient

ARGUMENTS = {"get-sum": {"a": 2, "b": 3}, "echo": {"message": "hi"}}


def _line(step: str, result=None, failure: BaseException | None = None) -> str:
    if failure is not None:
        return json.dumps({"step": step, "failure": f"{type(failure).__name__}: {failure}"})
    return json.dumps({"step": step, "http_status": result.http_status, "text": result.text,
                       "error": result.error, "raw": result.raw[:300]})


async def run(url: str, tools: list[str]) -> None:
    async with RawMcpClient(url) as client:  # trust_env=False, no proxy: only capture can carry this
        try:
            opened = await client.initialize()
        except httpx2.HTTPError as err:
            print(_line("initialize", failure=err), flush=True)
            return
        print(_line("initialize", opened), flush=True)
        if opened.http_status != 200:
            return
        for tool in tools:
            print(_line(tool, await client.call_tool(tool, ARGUMENTS.get(tool, {}))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("tools", nargs="*")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.tools))


if __name__ == "__main__":
    main()
