"""The decision: given what a policy judges and a body, pass or block (and say why, never the secret).

Pure: the server (server.py) hands it bytes and the policy's settings from the stream's gRPC metadata;
it returns None (pass) or a `Block` whose reason is a detector name or one of the reasons below. What
it cannot read, in a method it judges, it blocks (`unreadable-body`); a body of a method it does not
judge passes unread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.guardrail.detectors import Detector, first_match
from controlplane.guardrail.messages import NO_ID, Message, Unreadable, request_message, response_messages

UNREADABLE = "unreadable-body"
REQUEST, RESPONSE = "request", "response"
DEFAULT_METHODS = ("tools/call",)


@dataclass(frozen=True)
class Settings:
    """What one GuardrailPolicy asks (features/guardrail.py sends it as gRPC metadata)."""

    policy: str = ""
    requests: bool = True
    responses: bool = True
    methods: tuple[str, ...] = DEFAULT_METHODS

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> Settings:
        """The stream's metadata; absent or garbled values fall back to the strictest reading."""
        inspect = {s.strip() for s in metadata.get("x-agentic-guardrail-inspect", "").split(",") if s.strip()}
        methods = tuple(m.strip() for m in metadata.get("x-agentic-guardrail-methods", "").split(",") if m.strip())
        known = inspect & {"requests", "responses"}
        return cls(policy=metadata.get("x-agentic-guardrail-policy", "")[:200],
                   requests="requests" in known or not known, responses="responses" in known or not known,
                   methods=methods or DEFAULT_METHODS)

    def judges(self, method: str | None) -> bool:
        return "*" in self.methods or method in self.methods


@dataclass(frozen=True)
class Block:
    reason: str  # a detector's name, or UNREADABLE
    phase: str  # REQUEST or RESPONSE
    detail: str = ""  # for UNREADABLE: what could not be read (never body content)

    @property
    def message(self) -> str:
        where = "tool arguments" if self.phase == REQUEST else "tool result"
        if self.reason == UNREADABLE:
            return f"Blocked by the guardrail: the {self.phase} body could not be inspected."
        return f"Blocked by the guardrail: the {where} carry a {self.reason}."


@dataclass
class Exchange:
    """One HTTP exchange (one ext_proc stream): the request read so far, and the verdict so far."""

    settings: Settings
    found: tuple[Detector, ...]
    request: Message | None = None

    @property
    def request_id(self) -> Any:
        return self.request.id if self.request is not None else NO_ID

    @property
    def judged(self) -> bool:
        """Whether this exchange's method is one the policy judges (unknown: it is)."""
        return self.request is None or self.settings.judges(self.request.method)

    def on_request(self, body: bytes, content_encoding: str = "") -> Block | None:
        try:
            self.request = request_message(body, content_encoding)
        except Unreadable as error:
            return Block(UNREADABLE, REQUEST, str(error)) if self.settings.requests else None
        if not (self.settings.requests and self.judged):
            return None
        reason = first_match(self.request.strings, self.found)
        return Block(reason, REQUEST) if reason else None

    def on_response(self, body: bytes, content_type: str = "", content_encoding: str = "") -> Block | None:
        if not (self.settings.responses and self.judged):
            return None
        try:
            messages = response_messages(body, content_type, content_encoding)
        except Unreadable as error:
            return Block(UNREADABLE, RESPONSE, str(error))
        reason = first_match((s for m in messages for s in m.strings), self.found)
        return Block(reason, RESPONSE) if reason else None
