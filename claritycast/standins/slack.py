"""A local Slack Web API: a real HTTP server for tests and the demo.

slack-sdk is pointed at it with ``base_url``. It serves the four steps of the
external upload flow (``files.getUploadURLExternal``, the upload URL,
``files.completeUploadExternal``, ``chat.postMessage``), ``files.delete``
(which takes back a file whose message was refused) and ``auth.test``,
and checks what Slack checks: the bearer token, the declared length against
the bytes uploaded, a file completed before a block references it, and the
channel (unknown, archived, or without the app as a member). Answers are
Slack-shaped: ``{"ok": false, "error": "not_in_channel"}``, ids like
``C0…`` and ``F0…``, message ``ts`` strings.

Everything is deterministic: ids and timestamps come from counters. Tests read
``messages`` (every posted message with its image bytes), ``files`` (what is
still in the workspace), ``deleted`` (the ids of deleted files) and ``calls``
(every request, without its token), and inject faults with `fail_next`,
`files_not_ready`, `revoke_token` and `archive`. Given an ``outbox``, each
delivered message is also written to ``<outbox>/slack/<channel>-<ts>.json``
with its chart next to it as ``<channel>-<ts>.png``.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from claritycast.runtime.ports import LOOPBACK
from claritycast.standins.slack_records import (
    MAX_BLOCKS,
    Fault,
    LoggedCall,
    PostedMessage,
    SlackError,
    StandinChannel,
    StandinFile,
    arguments,
    check_block,
    json_arg,
    write_outbox,
)

TS_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: message ts count up from here
API_METHODS = (
    "auth.test",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
    "chat.postMessage",
    "files.delete",
)
UPLOAD = "upload"  # the method name of the upload URL, for `fail_next` and `calls`


@dataclass
class _Counters:
    channels: int = 0
    files: int = 0
    messages: int = 0


class SlackStandin:
    """One workspace with one bot token, served over loopback HTTP.

    Use as ``async with SlackStandin() as base_url:``; ``base_url`` is what
    slack-sdk takes (``http://127.0.0.1:<port>/api/``).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        outbox: Path | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        team: str = "claritycast",
    ) -> None:
        # A fresh bot token per stand-in (none is committed): each run's own secret.
        self.token = token or f"xoxb-{secrets.randbelow(10**10):010d}-{secrets.token_hex(12)}"
        self.outbox = outbox
        self.host = host
        self.port = port
        self.team = team
        self.latency_s = 0.0
        self.token_revoked = False
        self.channels: dict[str, StandinChannel] = {}
        self.files: dict[str, StandinFile] = {}
        self.messages: list[PostedMessage] = []
        self.deleted: list[str] = []
        self.calls: list[LoggedCall] = []
        self._faults: dict[str, list[Fault]] = {}
        self._files_not_ready = 0
        self._counters = _Counters()
        self._runner: web.AppRunner | None = None

    # Workspace state and faults

    def add_channel(
        self, name: str, *, member: bool = True, archived: bool = False
    ) -> StandinChannel:
        self._counters.channels += 1
        channel = StandinChannel(
            f"C0{self._counters.channels:09d}", name.lstrip("#"), member, archived
        )
        self.channels[channel.id] = channel
        return channel

    def channel(self, name_or_id: str) -> StandinChannel | None:
        """Find a channel the way chat.postMessage does: by id, ``#name`` or name."""
        if name_or_id in self.channels:
            return self.channels[name_or_id]
        name = name_or_id.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def archive(self, name_or_id: str) -> None:
        channel = self.channel(name_or_id)
        if channel is None:
            raise KeyError(name_or_id)
        channel.archived = True

    def revoke_token(self) -> None:
        """From now on every call answers ``token_revoked``."""
        self.token_revoked = True

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (or ``"upload"``) with a failure.

        ``error`` is the Slack code in the body; ``status`` defaults to 429 for
        ``ratelimited``, 200 for another code and 500 without one (an HTML page,
        as a proxy would answer). ``retry_after`` sets the Retry-After header.
        """
        if method not in (*API_METHODS, UPLOAD):
            raise ValueError(f"unknown method {method!r}")
        if status is None:
            status = 429 if error == "ratelimited" else (200 if error else 500)
        fault = Fault(error, status, retry_after, detail, times)
        self._faults.setdefault(method, []).append(fault)

    def files_not_ready(self, times: int = 1) -> None:
        """The next ``times`` posts that show a completed file are refused as real
        Slack does for a moment after an upload: ``invalid_blocks`` on ``slack_file``."""
        self._files_not_ready = times

    def calls_to(self, method: str) -> list[LoggedCall]:
        return [call for call in self.calls if call.method == method]

    # Serving

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/"

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        return app

    async def start(self) -> str:
        """Serve on ``host:port`` (0: a free port); returns the API base URL."""
        self._runner = web.AppRunner(
            self.application(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        assert server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # Handlers

    def _log(self, method: str, status: int, error: str | None) -> None:
        self.calls.append(LoggedCall(method, status, error, asyncio.get_running_loop().time()))

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    def _fault_response(self, method: str, fault: Fault) -> web.Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        self._log(method, fault.status, fault.error)
        if fault.error is None:
            return web.Response(
                status=fault.status,
                text=f"<html><body>{fault.status} from the stand-in</body></html>",
                content_type="text/html",
                headers=headers,
            )
        details = [fault.detail] if fault.detail else None
        return web.json_response(
            SlackError(fault.error, details=details).body(), status=fault.status, headers=headers
        )

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        fault = self._take_fault(method)
        if fault is not None:
            return self._fault_response(method, fault)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            args = await arguments(request)
            self._authenticate(request, args)
            body = await self._dispatch(method, args)
        except SlackError as refusal:
            self._log(method, refusal.status, refusal.error)
            return web.json_response(refusal.body(), status=refusal.status)
        self._log(method, 200, None)
        return web.json_response({"ok": True, **body})

    def _authenticate(self, request: web.Request, args: dict[str, Any]) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else str(args.get("token", ""))
        if not token:
            raise SlackError("not_authed")
        if token != self.token:
            raise SlackError("invalid_auth")
        if self.token_revoked:
            raise SlackError("token_revoked")

    async def _dispatch(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "url": f"https://{self.team}.slack.example/",
                "team": self.team,
                "user": "claritycast",
                "team_id": "T0000000001",
                "user_id": "U0000000001",
                "bot_id": "B0000000001",
            }
        if method == "files.getUploadURLExternal":
            return self._get_upload_url(args)
        if method == "files.completeUploadExternal":
            return self._complete_upload(args)
        if method == "chat.postMessage":
            return await self._post_message(args)
        if method == "files.delete":
            return self._delete_file(args)
        raise SlackError("unknown_method", status=404)

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length", ""))
        except ValueError:
            length = 0
        if not filename or length <= 0:
            raise SlackError("invalid_arguments", details=["filename and length are required"])
        self._counters.files += 1
        file = StandinFile(f"F0{self._counters.files:09d}", filename, length, args.get("alt_txt"))
        self.files[file.id] = file
        return {"upload_url": f"{self.root_url}/upload/{file.id}", "file_id": file.id}

    async def _upload(self, request: web.Request) -> web.Response:
        fault = self._take_fault(UPLOAD)
        if fault is not None:
            return self._fault_response(UPLOAD, fault)
        file = self.files.get(request.match_info["file_id"])
        if file is None or file.completed:
            self._log(UPLOAD, 404, "file_not_found")
            return web.Response(status=404, text="Not Found")
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            part = form.get("file") or next(iter(form.values()), None)
            data = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            data = await request.read()
        file.data = data
        self._log(UPLOAD, 200, None)
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = json_arg(args.get("files"))
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments", details=["files must be a non-empty array"])
        if args.get("channel_id") or args.get("channels"):
            for name in str(args.get("channel_id") or args.get("channels")).split(","):
                self._writable_channel(name.strip())
        completed: list[StandinFile] = []
        for entry in entries:
            file = self.files.get(str(entry.get("id", ""))) if isinstance(entry, dict) else None
            if file is None:
                raise SlackError("file_not_found")
            if file.data is None or len(file.data) != file.length:
                got = "nothing" if file.data is None else f"{len(file.data)} bytes"
                raise SlackError(
                    "invalid_arguments",
                    details=[f"{file.id}: declared {file.length} bytes, uploaded {got}"],
                )
            completed.append(file)
        for file, entry in zip(completed, entries, strict=True):
            file.completed = True
            file.title = entry.get("title") or file.filename
        return {
            "files": [
                {
                    "id": f.id,
                    "name": f.filename,
                    "title": f.title,
                    "mimetype": "image/png",
                    "size": f.length,
                }
                for f in completed
            ]
        }

    def _delete_file(self, args: dict[str, Any]) -> dict[str, Any]:
        """Like Slack: the file is gone from the workspace; an unknown id is ``file_not_found``."""
        file = self.files.pop(str(args.get("file") or ""), None)
        if file is None:
            raise SlackError("file_not_found")
        self.deleted.append(file.id)
        return {}

    def _writable_channel(self, name_or_id: str) -> StandinChannel:
        channel = self.channel(name_or_id) if name_or_id else None
        if channel is None:
            raise SlackError("channel_not_found")
        if channel.archived:
            raise SlackError("is_archived")
        if not channel.member:
            raise SlackError("not_in_channel")
        return channel

    async def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(str(args.get("channel") or ""))
        text = args.get("text")
        raw_blocks = args.get("blocks")
        if not text and not raw_blocks:
            raise SlackError("no_text")
        blocks = json_arg(raw_blocks) if raw_blocks else []
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        shown = self._check_blocks(blocks)
        self._counters.messages += 1
        ts = f"{TS_EPOCH + self._counters.messages}.{self._counters.messages * 100:06d}"
        files = {f.id: f.data or b"" for f in shown}
        message = PostedMessage(channel.id, channel.name, ts, text, blocks, files)
        self.messages.append(message)
        if self.outbox is not None:
            await asyncio.to_thread(write_outbox, self.outbox, message)
        return {
            "channel": channel.id,
            "ts": ts,
            "message": {"type": "message", "text": text, "blocks": blocks, "ts": ts},
        }

    def _check_blocks(self, blocks: list[Any]) -> list[StandinFile]:
        """Raise ``invalid_blocks`` as Slack would; return the files the blocks show."""
        problems: list[str] = []
        shown: list[StandinFile] = []
        if len(blocks) > MAX_BLOCKS:
            problems.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
        for i, block in enumerate(blocks):
            where = f"/blocks/{i}"
            if not isinstance(block, dict):
                problems.append(f"must be an object [json-pointer:{where}]")
                continue
            problems += check_block(block, where)
            slack_file = block.get("slack_file")
            if block.get("type") != "image" or not isinstance(slack_file, dict):
                continue
            file = self.files.get(str(slack_file.get("id", "")))
            if file is None or not file.completed:
                problems.append(f"invalid slack file [json-pointer:{where}/slack_file]")
            elif self._files_not_ready:
                self._files_not_ready -= 1
                problems.append(f"invalid slack file [json-pointer:{where}/slack_file]")
            else:
                shown.append(file)
        if problems:
            raise SlackError("invalid_blocks", details=problems)
        return shown
