"""A local OpenAI-compatible chat-completions server: the AI summariser's stand-in.

It answers ``POST /v1/chat/completions`` with a short summary written from the
JSON data block it was sent, deterministically, so the demo shows an AI
summary offline and tests can check what the summariser did with the answer.
It can be told to misbehave (``mode``): refuse, filter, answer garbage, the
wrong shape, a 500, far too much, or a link and a mention; ``delay_s`` makes
it late; ``content`` replaces the written summary with a given answer. Every
request is recorded, Authorization header included (test keys only: no real
client is ever pointed at this server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from claritycast.runtime.ports import LOOPBACK

API_PATH = "/v1/chat/completions"

Mode = Literal[
    "summary",
    "refusal",
    "content_filter",
    "empty",
    "garbage",
    "wrong_shape",
    "http_500",
    "too_long",
    "injected",
]
MODES: tuple[str, ...] = Mode.__args__  # type: ignore[attr-defined]
INJECTED = "Sessions rose sharply. Claim your report at https://evil.example/login now <!channel>."
_DATA_BLOCK = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class ChatRequest:
    """One request as the stand-in received it."""

    authorization: str | None
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    def content(self, role: str) -> str:
        """The text of the first message with this role ('' when none)."""
        for message in self.messages:
            if isinstance(message, dict) and message.get("role") == role:
                return str(message.get("content", ""))
        return ""

    @property
    def data(self) -> dict[str, Any] | None:
        """The JSON data block of the user message, parsed."""
        return data_block(self.content("user"))


def data_block(text: str) -> dict[str, Any] | None:
    """The fenced JSON block in a message, or None when absent or not an object."""
    match = _DATA_BLOCK.search(text)
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def standin_summary(data: dict[str, Any] | None) -> str:
    """A short, deterministic summary written only from the data block."""
    if not data:
        return "There is no data to summarise."
    metric, project = data.get("metric", "This metric"), data.get("project", "this project")
    sentences = []
    current, change = data.get("current_period"), data.get("change_pct")
    if isinstance(current, dict):
        days = data.get("period_days", 1)
        period = "on the latest day" if days == 1 else f"over the latest {days} days"
        sentence = f"{metric} for {project} came to {current.get('display')} {period}"
        if isinstance(change, int | float) and change:
            direction = "up" if change > 0 else "down"
            sentence += f", {direction} {abs(change):.0f}% on the period before"
        sentences.append(sentence + ".")
    elif isinstance(data.get("latest"), dict):
        latest = data["latest"]
        sentences.append(
            f"{metric} for {project} was {latest.get('display')} on {latest.get('day')}."
        )
    top = data.get("top")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        leader = top[0]
        share = leader.get("share_pct")
        figure = f"{share:.0f}% of the total" if isinstance(share, int | float) else None
        sentences.append(f"{leader.get('label')} leads with {figure or leader.get('display')}.")
    for key, word in (("best_day", "The best day"), ("highest_day", "The highest day")):
        day = data.get(key)
        if isinstance(day, dict):
            sentences.append(f"{word} was {day.get('day')} at {day.get('display')}.")
    return " ".join(sentences) or f"{metric} for {project}: no figures yet."


class AIStandin:
    """A chat-completions endpoint for tests and the demo."""

    def __init__(
        self,
        *,
        mode: Mode = "summary",
        delay_s: float = 0.0,
        api_key: str | None = None,
        content: str | None = None,
    ) -> None:
        self.mode: Mode = mode
        self.content = content
        self.delay_s = delay_s
        self.api_key = api_key
        self.requests: list[ChatRequest] = []
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url = ""

    @property
    def api_url(self) -> str:
        """The base URL a client is configured with (it appends /chat/completions)."""
        return f"{self.base_url}/v1"

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post(API_PATH, self._chat)
        return app

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns `api_url`."""
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        assert server.sockets
        self.base_url = f"http://{host}:{server.sockets[0].getsockname()[1]}"
        return self.api_url

    async def __aenter__(self) -> AIStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop serving; requests still waiting out ``delay_s`` are answered at once."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body is not an object")
        authorization = request.headers.get("Authorization")
        self.requests.append(ChatRequest(authorization, body))
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return _error(401, "invalid api key")
        if not body.get("model") or not isinstance(body.get("messages"), list):
            return _error(400, "model and messages are required")
        if self.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay_s)
        return self._answer(str(body["model"]), ChatRequest(authorization, body).data)

    def _answer(self, model: str, data: dict[str, Any] | None) -> web.Response:
        mode = self.mode
        if mode == "http_500":
            return _error(500, "the model crashed")
        if mode == "garbage":
            return web.Response(
                text="<html><body>Bad gateway</body></html>", content_type="text/html"
            )
        if mode == "wrong_shape":
            return web.json_response({"result": standin_summary(data)})
        text = self.content if self.content is not None else standin_summary(data)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if mode == "refusal":
            message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
        elif mode == "content_filter":
            message["content"], finish = "", "content_filter"
        elif mode == "empty":
            message["content"] = ""
        elif mode == "too_long":
            message["content"] = " ".join(
                f"Point {n}: {standin_summary(data)}" for n in range(1, 40)
            )
        elif mode == "injected":
            message["content"] = INJECTED
        return web.json_response(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "standin"}}, status=status)
