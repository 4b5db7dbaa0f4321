"""The MCP server the conformance suite (npm ``@modelcontextprotocol/conformance``) expects, for tests.

Why a server of our own: the suite's server scenarios call an "everything" server with fixed names
(``test_simple_text``, ``test://static-text``, ``test_simple_prompt``, ...). Its reference copies live in
the SDK repositories as examples and are in no package this project can install. This module serves
the same names and shapes, written against the Python SDK the tests already use, so the suite has a
real, spec-following server behind the gateway: server-to-client requests (sampling, elicitation) on
the POST's SSE stream, progress and log notifications, resources, templates, subscriptions, prompts,
completion. Scenarios it does not serve fail the same way directly and through a gateway, which is
what the conformance test compares.

    python -m tests.support.conformance_server --port 3001      # http://127.0.0.1:3001/mcp
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from tests.support.mcp_server import serve_app, tiny_png

__all__ = ["build_conformance_server"]

SERVER_NAME = "agentic-cp-conformance-server"
IMAGE_B64 = base64.b64encode(tiny_png()).decode()
# A valid 44-byte WAV header with no samples: the smallest audio the suite accepts as audio/wav.
AUDIO_B64 = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
                             b"\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00").decode()


class UserResponse(BaseModel):
    """What ``test_elicitation`` asks the client for (SDK tools need the schema at module level)."""

    response: str = Field(description="User's response")


def build_conformance_server():
    """A fresh ``MCPServer`` with the suite's tools, resources and prompts (one per serve)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(SERVER_NAME, version="1.0.0", log_level="WARNING")
    _add_content_tools(server)
    _add_interactive_tools(server)
    _add_resources(server)
    _add_prompts(server)
    _add_protocol_handlers(server)
    return server


def _add_content_tools(server) -> None:
    """Tools whose result is one kind of content each, or an error."""
    from mcp_types import AudioContent, EmbeddedResource, ImageContent, TextContent, TextResourceContents

    def text_resource(uri: str, text: str, mime: str = "text/plain") -> EmbeddedResource:
        return EmbeddedResource(type="resource",
                                resource=TextResourceContents(uri=uri, mime_type=mime, text=text))

    @server.tool(name="test_simple_text", structured_output=False)
    def simple_text() -> str:
        """Answers one text content."""
        return "This is a simple text response for testing."

    @server.tool(name="test_image_content", structured_output=False)
    def image_content() -> list:
        """Answers one PNG image."""
        return [ImageContent(type="image", data=IMAGE_B64, mime_type="image/png")]

    @server.tool(name="test_audio_content", structured_output=False)
    def audio_content() -> list:
        """Answers one WAV audio clip."""
        return [AudioContent(type="audio", data=AUDIO_B64, mime_type="audio/wav")]

    @server.tool(name="test_embedded_resource", structured_output=False)
    def embedded_resource() -> list:
        """Answers one embedded text resource."""
        return [text_resource("test://embedded-resource", "This is an embedded resource content.")]

    @server.tool(name="test_multiple_content_types", structured_output=False)
    def multiple_content_types() -> list:
        """Answers text, an image and a resource."""
        return [TextContent(type="text", text="Multiple content types test:"),
                ImageContent(type="image", data=IMAGE_B64, mime_type="image/png"),
                text_resource("test://mixed-content-resource", '{"test": "data", "value": 123}',
                              "application/json")]

    @server.tool(name="test_error_handling", structured_output=False)
    def error_handling() -> str:
        """Fails, so the result carries isError."""
        raise RuntimeError("This tool intentionally returns an error for testing")


def _add_interactive_tools(server) -> None:
    """Tools that talk back to the client while they run: notifications and server-to-client requests."""
    from mcp_types import SamplingMessage, TextContent

    @server.tool(name="test_tool_with_logging", structured_output=False)
    async def with_logging(ctx: Context) -> str:
        """Sends three log notifications while it runs."""
        for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(step)
            await asyncio.sleep(0.05)
        return "Tool with logging executed successfully"

    @server.tool(name="test_tool_with_progress", structured_output=False)
    async def with_progress(ctx: Context) -> str:
        """Sends three progress notifications while it runs."""
        for done in (0, 50, 100):
            await ctx.report_progress(progress=done, total=100, message=f"Completed step {done} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta
        return str(getattr(meta, "progress_token", 0) if meta else 0)

    @server.tool(name="test_sampling", structured_output=False)
    async def sampling(prompt: str, ctx: Context) -> str:
        """Asks the client for an LLM completion (sampling/createMessage)."""
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100, related_request_id=ctx.request_id)
        text = result.content.text if getattr(result.content, "type", None) == "text" else "No response"
        return f"LLM response: {text}"

    @server.tool(name="test_elicitation", structured_output=False)
    async def elicitation(message: str, ctx: Context) -> str:
        """Asks the client for input (elicitation/create)."""
        answer = await ctx.elicit(message=message, schema=UserResponse)
        content = answer.data.model_dump_json() if answer.action == "accept" else "{}"
        return f"User response: action={answer.action}, content={content}"


def _add_resources(server) -> None:
    @server.resource("test://static-text", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        return tiny_png()

    @server.resource("test://template/{id}/data", mime_type="application/json")
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource", mime_type="text/plain")
    def watched() -> str:
        return "Watched resource content"


def _add_prompts(server) -> None:
    from mcp.server.mcpserver.prompts.base import UserMessage
    from mcp_types import EmbeddedResource, ImageContent, TextContent, TextResourceContents

    @server.prompt(name="test_simple_prompt")
    def simple_prompt() -> list:
        """A prompt without arguments."""
        return [UserMessage(content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt(name="test_prompt_with_arguments")
    def with_arguments(arg1: str, arg2: str) -> list:
        """A prompt with two required arguments."""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(content=TextContent(type="text", text=text))]

    @server.prompt(name="test_prompt_with_embedded_resource")
    def with_embedded_resource(resourceUri: str) -> list:  # the suite sends this argument name
        """A prompt that embeds a resource."""
        resource = TextResourceContents(uri=resourceUri, mime_type="text/plain",
                                        text="Embedded resource content for testing.")
        return [UserMessage(content=EmbeddedResource(type="resource", resource=resource)),
                UserMessage(content=TextContent(type="text", text="Please process the embedded resource above."))]

    @server.prompt(name="test_prompt_with_image")
    def with_image() -> list:
        """A prompt that carries an image."""
        return [UserMessage(content=ImageContent(type="image", data=IMAGE_B64, mime_type="image/png")),
                UserMessage(content=TextContent(type="text", text="Please analyze the image above."))]


def _add_protocol_handlers(server) -> None:
    """logging/setLevel, resources/(un)subscribe and completion: acknowledged, nothing more."""
    import mcp_types as types

    lowlevel = server._lowlevel_server  # MCPServer has no public hook for these three methods

    async def acknowledge(ctx, params) -> types.EmptyResult:
        return types.EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, acknowledge)
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, acknowledge)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, acknowledge)

    @server.completion()
    async def complete(ref, argument, context):
        return types.Completion(values=[], total=0, has_more=False)


async def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.conformance_server",
                                     description="Serve the MCP conformance suite's everything server.")
    parser.add_argument("--port", type=int, default=3001, help="0 picks a free port (printed on start)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    async with serve_app(build_conformance_server(), port=args.port, host=args.host) as server:
        print(f"MCP conformance server listening on {server.url}", flush=True)
        await server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
