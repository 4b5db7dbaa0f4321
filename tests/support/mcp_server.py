"""A real MCP tool server for tests and the demo: the tools upstream's suites call, over streamable HTTP.

Why not the upstream server itself: upstream kube-agentic-networking tests against
``npx @modelcontextprotocol/server-everything streamableHttp`` (port 3001, path ``/mcp``). That needs Node
and npm at test time. This module serves the same four tools, with the same names, argument shapes and
result texts that upstream's ``cases.yaml`` compares, through the official Python MCP SDK
(``mcp.server.mcpserver.MCPServer``), so the server side is still a real, spec-following MCP
implementation: stateful sessions (``mcp-session-id``), SSE responses by default (JSON with
``json_response=True``), DELETE to end a session.

- ``get-sum {a, b}``     -> ``"The sum of a and b is a+b."`` with JavaScript number printing (``2`` not ``2.0``)
- ``echo {message}``     -> ``"Echo: <message>"``
- ``get-env {}``         -> a JSON text. Upstream dumps the whole process environment; this one returns a
                           small, harmless subset, because the demo prints results and an environment can
                           hold secrets.
- ``get-tiny-image {}``  -> text, a 1x1 PNG image content (base64), text (upstream's shape)

``--tool-log FILE`` appends one JSON line per tool that actually ran (``{"tool": ..., "arguments": ...}``):
the server's own record of what executed, so a test can prove that a request a gateway should have
refused never reached a tool, whatever the answer the caller saw.

Use in-process (tests)::

    async with serve_mcp(port=0) as server:
        ...  # server.url == "http://127.0.0.1:<port>/mcp"

or as a process (the demo): ``python -m tests.support.mcp_server --port 3001``.

uvicorn runs on the caller's asyncio loop from a socket bound before it starts, so ``port=0`` yields the
real port without racing another process for it.

DNS-rebinding protection is off by default: the SDK enables it for a localhost bind and then rejects any
Host header other than ``127.0.0.1:*``/``localhost:*``, but behind a gateway the Host is whatever the agent
addressed (a gateway name). A test backend that a gateway fronts must accept it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

__all__ = ["TOOL_NAMES", "McpServerHandle", "build_server", "js_number", "serve_app", "serve_mcp", "tiny_png"]

TOOL_NAMES = ("echo", "get-sum", "get-env", "get-tiny-image")
DEFAULT_PATH = "/mcp"
SHUTDOWN_GRACE_SECONDS = 2
# serve_mcp blocks running per event loop; see _stop_sse_watcher.
_active: WeakKeyDictionary[asyncio.AbstractEventLoop, int] = WeakKeyDictionary()


def js_number(value: float) -> str:
    """Print a number the way JavaScript's ``String(n)`` does for ordinary values: ``5`` not ``5.0``.

    Upstream's result texts come from a Node server, so ``get-sum`` must say ``5`` for 2+3 to compare equal.
    """
    if isinstance(value, bool):
        value = int(value)
    number = float(value)
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    return repr(number)


def tiny_png() -> bytes:
    """A valid 1x1 opaque PNG, built from its chunks so no binary blob lives in the source."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit, truecolour, no interlace
    pixels = zlib.compress(b"\x00" + bytes((0x33, 0x66, 0x99)))  # filter byte + one RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _recorder(tool_log: str | os.PathLike[str] | None):
    """A function that records one executed tool call in ``tool_log`` (or does nothing without one)."""

    def record(tool: str, **arguments) -> None:
        if tool_log is not None:
            with open(tool_log, "a", encoding="utf-8") as log:
                log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")

    return record


def build_server(*, name: str = "mcp-servers/everything", tool_log: str | os.PathLike[str] | None = None):
    """A fresh ``MCPServer`` holding the four tools. One per serve: the SDK's session manager runs once."""
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ImageContent, TextContent

    server = MCPServer(name, version="devtools", log_level="WARNING")
    record = _recorder(tool_log)

    @server.tool(name="get-sum", description="Returns the sum of two numbers", structured_output=False)
    def get_sum(a: float, b: float) -> str:
        record("get-sum", a=a, b=b)
        return f"The sum of {js_number(a)} and {js_number(b)} is {js_number(a + b)}."

    @server.tool(name="echo", description="Echoes back the input string", structured_output=False)
    def echo(message: str) -> str:
        record("echo", message=message)
        return f"Echo: {message}"

    @server.tool(name="get-env", description="Returns a few facts about the server's environment",
                 structured_output=False)
    def get_env() -> str:
        record("get-env")
        facts = {"server": "tests.support.mcp_server", "python": platform.python_version(),
                 "pid": os.getpid(), "MCP_TEST_SERVER": "1"}
        return json.dumps(facts, indent=2)

    @server.tool(name="get-tiny-image", description="Returns a tiny image", structured_output=False)
    def get_tiny_image() -> list:
        record("get-tiny-image")
        return [
            TextContent(type="text", text="This is a tiny image:"),
            ImageContent(type="image", data=base64.b64encode(tiny_png()).decode(), mime_type="image/png"),
            TextContent(type="text", text="The image above is a 1x1 PNG."),
        ]

    return server


@dataclass
class McpServerHandle:
    """A running server: where to reach it, and a way to wait until it stops."""

    host: str
    port: int
    path: str = DEFAULT_PATH
    _task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    async def wait(self) -> None:
        """Return when uvicorn stops (for the command line, where SIGINT/SIGTERM stop it)."""
        if self._task is not None:
            await asyncio.shield(self._task)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _stop_sse_watcher() -> None:
    """End sse-starlette's per-loop shutdown watcher once the last server on this loop has stopped.

    sse-starlette (the SDK's SSE layer) starts one polling task per event loop on its first SSE response
    and leaves it running until the loop closes; it cannot notice an in-process uvicorn that has already
    returned. Cancelling it is safe: its ``finally`` marks it stopped, and the next SSE response starts a
    new one. Only done when no other ``serve_mcp`` shares the loop, because a running server's streams
    rely on it to drain at shutdown.
    """
    watchers = [t for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "__qualname__", "") == "_shutdown_watcher" and not t.done()]
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)


@asynccontextmanager
async def serve_mcp(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    path: str = DEFAULT_PATH,
    json_response: bool = False,
    dns_rebinding_protection: bool = False,
    startup_timeout: float = 10.0,
    tool_log: str | os.PathLike[str] | None = None,
    response_headers: tuple[tuple[str, str], ...] = (),
    tls: tuple[str, str] | None = None,
    seen_header: tuple[str, list[str | None]] | None = None,
) -> AsyncIterator[McpServerHandle]:
    """Serve the test tools at ``http://host:port/path`` on the running loop until the block exits.

    ``json_response`` chooses the SDK's plain-JSON answers instead of one SSE event per POST; both are
    legal streamable HTTP and clients must accept either. On exit uvicorn stops accepting, gives open
    streams ``SHUTDOWN_GRACE_SECONDS`` and then the SDK's session manager closes every session.
    ``tls`` (cert file, key file) serves HTTPS, as an external provider does; ``seen_header`` (name, list)
    appends that request header's value (None when absent) of every request to the list.
    """
    async with serve_app(build_server(tool_log=tool_log), port=port, host=host, path=path,
                         json_response=json_response, dns_rebinding_protection=dns_rebinding_protection,
                         startup_timeout=startup_timeout, response_headers=response_headers, tls=tls,
                         seen_header=seen_header) as handle:
        yield handle


@asynccontextmanager
async def serve_app(
    mcp_server,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    path: str = DEFAULT_PATH,
    json_response: bool = False,
    dns_rebinding_protection: bool = False,
    startup_timeout: float = 10.0,
    response_headers: tuple[tuple[str, str], ...] = (),
    tls: tuple[str, str] | None = None,
    seen_header: tuple[str, list[str | None]] | None = None,
) -> AsyncIterator[McpServerHandle]:
    """Serve any ``MCPServer`` over streamable HTTP as ``serve_mcp`` serves the test tools (the
    conformance server shares it)."""
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    app = mcp_server.streamable_http_app(
        streamable_http_path=path,
        json_response=json_response,
        host=host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=dns_rebinding_protection),
    )
    if response_headers:
        app = _with_response_headers(app, response_headers)
    if seen_header is not None:
        app = _recording(app, *seen_header)
    loop = asyncio.get_running_loop()
    sock = _bind(host, port)
    ssl_files = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, ws="none", **ssl_files)
    server = uvicorn.Server(config)
    _active[loop] = _active.get(loop, 0) + 1
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"mcp-server:{sock.getsockname()[1]}")
    try:
        deadline = loop.time() + startup_timeout
        while not server.started:
            if task.done():
                task.result()  # re-raises why uvicorn stopped
                raise RuntimeError("uvicorn exited before it started serving")
            if loop.time() > deadline:
                raise TimeoutError(f"MCP server did not start within {startup_timeout} s")
            await asyncio.sleep(0.02)
        yield McpServerHandle(host=host, port=sock.getsockname()[1], path=path, _task=task)
    finally:
        server.should_exit = True
        _, pending = await asyncio.wait({task}, timeout=SHUTDOWN_GRACE_SECONDS + 5)
        if pending:  # a stream that ignores the graceful shutdown: stop hard
            server.force_exit = True
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
        _active[loop] -= 1
        if not _active[loop]:
            await _stop_sse_watcher()


def _with_response_headers(app, headers: tuple[tuple[str, str], ...]):
    """The ASGI app, adding `headers` to every response: a server that says things it should not (tests
    that the gateway strips a forged `x-agentic-decision`)."""
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers]

    async def wrapped(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *encoded]}
            await send(message)
        await app(scope, receive, send_with_headers if scope["type"] == "http" else send)
    return wrapped


def _header(value: str) -> tuple[str, str]:
    name, sep, text = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, not {value!r}")
    return name.strip(), text.strip()


def _recording(app, name: str, seen: list):
    """An ASGI wrapper that records one request header of every HTTP request (what a provider received)."""
    wanted = name.lower().encode()

    async def recorded(scope, receive, send):
        if scope["type"] == "http":
            values = [v.decode() for k, v in scope["headers"] if k == wanted]
            seen.append(values[0] if values else None)
        await app(scope, receive, send)

    return recorded


async def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.mcp_server",
                                     description="Serve the test MCP tools over streamable HTTP.")
    parser.add_argument("--port", type=int, default=3001, help="0 picks a free port (printed on start)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default=DEFAULT_PATH)
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON, not SSE")
    parser.add_argument("--tool-log", help="append one JSON line per executed tool call to this file")
    parser.add_argument("--response-header", type=_header, action="append", default=[], metavar="NAME:VALUE",
                        help="add this header to every response (repeatable)")
    args = parser.parse_args(argv)
    async with serve_mcp(port=args.port, host=args.host, path=args.path, json_response=args.json_response,
                         tool_log=args.tool_log, response_headers=tuple(args.response_header)) as server:
        print(f"MCP test server listening on {server.url}", flush=True)
        await server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
