"""What the Slack stand-in keeps: channels, files, messages, calls, and Slack's answers.

Tests read these; `write_outbox` leaves each delivered message and its chart
on disk for the demo. Block Kit is checked as Slack checks it (`check_block`),
so a report Slack would refuse is refused here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

MAX_BLOCKS = 50


@dataclass
class StandinChannel:
    """A channel; ``member`` says whether the app was invited."""

    id: str
    name: str
    member: bool = True
    archived: bool = False


@dataclass
class StandinFile:
    """A file from ``getUploadURLExternal`` on, through upload and completion."""

    id: str
    filename: str
    length: int
    alt_txt: str | None
    title: str | None = None
    data: bytes | None = None
    completed: bool = False


@dataclass(frozen=True)
class PostedMessage:
    """One message as posted, with the bytes of every file its blocks show."""

    channel: str
    channel_name: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]]
    files: dict[str, bytes]

    def payload(self) -> dict[str, Any]:
        """What the outbox keeps: the message without the image bytes."""
        return {
            "channel": self.channel,
            "channel_name": self.channel_name,
            "ts": self.ts,
            "text": self.text,
            "blocks": self.blocks,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class LoggedCall:
    """One request as the stand-in saw it (its token is never kept).

    ``at`` is the event loop's monotonic clock, to measure waits between calls.
    """

    method: str
    status: int
    error: str | None
    at: float


@dataclass
class Fault:
    error: str | None
    status: int
    retry_after: float | None
    detail: str | None
    times: int


class SlackError(Exception):
    """A Slack-shaped refusal, raised inside a handler."""

    def __init__(
        self, error: str, status: int = 200, details: list[str] | None = None, **extra: Any
    ) -> None:
        self.error = error
        self.status = status
        self.details = details or []
        self.extra = extra
        super().__init__(error)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.details:
            body["errors"] = self.details
            body["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in self.details]}
        return body


def check_text(text: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in kinds:
        return [f"must be a {' or '.join(kinds)} text object [json-pointer:{where}]"]
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return [f"must be at least 1 character [json-pointer:{where}/text]"]
    if len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    return []


def check_block(block: dict[str, Any], where: str) -> list[str]:
    """The Block Kit rules a report's blocks can break."""
    kind = block.get("type")
    if kind == "header":
        return check_text(block.get("text"), f"{where}/text", 150, ("plain_text",))
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return [f"must provide text or fields [json-pointer:{where}]"]
        if "text" in block:
            return check_text(block["text"], f"{where}/text", 3000, ("plain_text", "mrkdwn"))
        return []
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return [f"must have 1 to 10 elements [json-pointer:{where}/elements]"]
        problems: list[str] = []
        for j, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "image":
                continue
            problems += check_text(element, f"{where}/elements/{j}", 3000, ("plain_text", "mrkdwn"))
        return problems
    if kind == "image":
        alt = block.get("alt_text")
        problems = []
        if not isinstance(alt, str) or not 1 <= len(alt) <= 2000:
            problems.append(f"must be 1 to 2000 characters [json-pointer:{where}/alt_text]")
        if ("image_url" in block) == ("slack_file" in block):
            problems.append(f"must provide exactly one of image_url, slack_file [{where}]")
        return problems
    if kind in ("divider", "actions", "rich_text"):
        return []
    return [f"unsupported type: {kind} [json-pointer:{where}/type]"]


async def arguments(request: web.Request) -> dict[str, Any]:
    """Arguments as Slack reads them: query string, then a form or JSON body."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        args.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def json_arg(value: Any) -> Any:
    """A form or query argument holding JSON (``files``, ``blocks``), or the value itself."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def write_outbox(outbox: Path, message: PostedMessage) -> None:
    folder = outbox / "slack"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{message.channel_name}-{message.ts}"
    (folder / f"{stem}.json").write_text(
        json.dumps(message.payload(), indent=2) + "\n", encoding="utf-8"
    )
    for i, data in enumerate(message.files.values()):
        (folder / (f"{stem}.png" if i == 0 else f"{stem}-{i + 1}.png")).write_bytes(data)
