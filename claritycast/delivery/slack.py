"""Post a report to a Slack channel: the chart as an uploaded image, the words as blocks.

The external upload flow (``files.upload`` is retired): ask for an upload URL,
POST the PNG there, complete the upload without sharing it anywhere, then post
one message whose ``image`` block references the file, which shares it. If
Slack then refuses the report for good, the file is deleted (``files.delete``).

Every call is retried here, inside one deadline per report: rate limits wait
for ``Retry-After``, 5xx / network failures / Slack's own transient error codes
back off exponentially with jitter, and a freshly completed file that Slack
does not yet accept in a block (``invalid_blocks`` on its ``slack_file``) is
posted again a moment later. Anything else Slack refuses is permanent and is
never retried. slack-sdk's own retry handlers are switched off: they know no
deadline and retry on HTTP status only.

Every slack-sdk and aiohttp exception is translated here into
`DeliveryPermanent` or `DeliveryRetryable`; the token appears in neither (it
only ever travels in the Authorization header, which slack-sdk's debug log
redacts, and it is registered with the log redactor as well).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from claritycast.delivery.slack_blocks import build_blocks, fallback_text
from claritycast.errors import ConfigError, DeliveryPermanent, DeliveryRetryable
from claritycast.logs import get_logger
from claritycast.redact import register_secret
from claritycast.settings import Settings
from models.report import Report

log = get_logger(__name__)

T = TypeVar("T")

ATTEMPT_TIMEOUT_S = 30.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
DEFAULT_RETRY_AFTER_S = 1.0

# Slack error codes worth another try: Slack said so, or it is having a bad moment.
TRANSIENT_CODES = frozenset(
    {
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "ratelimited",
        "rate_limited",
        "team_added_to_org",
    }
)

# What the operator must do, by Slack error code; ``{channel}`` is filled in.
_SET_BOT_CREDENTIAL = "set CLARITYCAST_SLACK_TOKEN to the app's bot token (xoxb-…)"
_REINSTALL_HELP = f"reinstall the Slack app and {_SET_BOT_CREDENTIAL}"
OPERATOR_HELP: Mapping[str, str] = {
    "not_authed": f"Slack received no token: {_SET_BOT_CREDENTIAL}",
    "invalid_auth": f"Slack does not accept the bot token: {_SET_BOT_CREDENTIAL}",
    "token_revoked": f"the Slack bot token was revoked: {_REINSTALL_HELP}",
    "token_expired": f"the Slack bot token expired: {_REINSTALL_HELP}",
    "account_inactive": f"the Slack app's bot user is inactive or uninstalled: {_REINSTALL_HELP}",
    "no_permission": "the Slack app may not do this in {channel}: check its permissions",
    "missing_scope": (
        "the Slack app lacks a scope{needed}: add chat:write and files:write, then reinstall it"
    ),
    "not_allowed_token_type": f"this is not a bot token: {_SET_BOT_CREDENTIAL}",
    "not_in_channel": (
        "the Slack app is not a member of {channel}: invite it there "
        "(/invite @<app> in {channel}), then resume the connection"
    ),
    "channel_not_found": (
        "Slack has no channel {channel} that the app can see: check the name or id, "
        "and invite the app first if the channel is private"
    ),
    "is_archived": (
        "Slack channel {channel} is archived: unarchive it or point the connection "
        "at another channel"
    ),
    "restricted_action": "the workspace does not let the app post in {channel}",
    "ekm_access_denied": "the workspace's key management denies access: ask a Slack admin",
    "team_access_not_granted": "the token has no access to the workspace of {channel}",
}


@dataclass(frozen=True)
class SlackReceipt:
    """Where the report landed: the channel id, message ts and file id Slack answered."""

    channel: str
    ts: str
    file_id: str


@dataclass(frozen=True)
class _Transient:
    reason: str
    detail: str
    retry_after_s: float | None = None


class SlackSender:
    """Sends reports to Slack channels with one bot token.

    ``deadline_s`` bounds one `send` in total, retries and waits included.
    A ``session`` passed in is used and left open; otherwise the sender opens
    its own on first use and `close` closes it.
    """

    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        deadline_s: float,
        session: aiohttp.ClientSession | None = None,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
        backoff_first_s: float = BACKOFF_FIRST_S,
        rng: random.Random | None = None,
    ) -> None:
        register_secret(token)
        self._token = token
        self.base_url = base_url
        self.deadline_s = deadline_s
        self.attempt_timeout_s = attempt_timeout_s
        self.backoff_first_s = backoff_first_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._session = session
        self._owns_session = session is None
        self._client: AsyncWebClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackSender:
        """A sender from `Settings`; a `ConfigError` when no token is set."""
        secret = settings.slack_token
        token = secret.get_secret_value().strip() if secret is not None else ""
        if not token:
            raise ConfigError(
                "CLARITYCAST_SLACK_TOKEN",
                "not set: create a Slack app with the chat:write and files:write scopes "
                "and set its bot token (xoxb-…)",
            )
        return cls(token, settings.slack_api_url, deadline_s=settings.delivery_deadline_s)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None

    async def _ask_upload_url(
        self, client: AsyncWebClient, channel: str, deadline: float, report: Report
    ) -> tuple[str, str]:
        """The first step of the external upload: a file id and where to send its bytes."""

        async def get_upload_url() -> Any:
            return await client.files_getUploadURLExternal(
                filename=report.filename, length=len(report.png), alt_txt=report.alt_text
            )

        ticket = await self._retrying(
            "files.getUploadURLExternal", channel, deadline, get_upload_url
        )
        return _field(ticket, "file_id"), _field(ticket, "upload_url")

    async def _upload_chart(
        self,
        client: AsyncWebClient,
        session: aiohttp.ClientSession,
        channel: str,
        deadline: float,
        report: Report,
        ticket: tuple[str, str],
    ) -> None:
        """Send the bytes to the upload URL and complete the file, shared nowhere yet."""
        file_id, upload_url = ticket

        async def upload() -> None:
            await _upload(session, upload_url, report.png, proxy=client.proxy)

        await self._retrying("upload", channel, deadline, upload)

        async def complete() -> Any:
            return await client.files_completeUploadExternal(
                files=[{"id": file_id, "title": report.title}]
            )

        await self._retrying("files.completeUploadExternal", channel, deadline, complete)

    async def send(self, channel: str, report: Report) -> SlackReceipt:
        """Upload the chart (if any) and post the report to ``channel`` (an id or a #name).

        When Slack refuses for good after the file exists (``not_in_channel``,
        an archived channel, …) the file is deleted: no chart stays in the
        workspace without its message.
        """
        client, session = self._connect()
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        file_id = ""

        async def post() -> Any:
            return await client.chat_postMessage(
                channel=channel,
                text=fallback_text(report),
                blocks=build_blocks(report, file_id),
                unfurl_links=False,
                unfurl_media=False,
            )

        try:
            if report.has_chart:
                ticket = await self._ask_upload_url(client, channel, deadline, report)
                file_id = ticket[0]
                await self._upload_chart(client, session, channel, deadline, report, ticket)
            posted = await self._retrying("chat.postMessage", channel, deadline, post)
        except DeliveryPermanent:
            if file_id:
                await self._delete_file(client, file_id, channel)
            raise
        receipt = SlackReceipt(_field(posted, "channel"), _field(posted, "ts"), file_id)
        log.info("slack.posted", channel=receipt.channel, ts=receipt.ts, file_id=file_id)
        return receipt

    async def _delete_file(self, client: AsyncWebClient, file_id: str, channel: str) -> None:
        """Delete a chart whose message Slack refused; a failure is logged, never raised.

        Only after a permanent refusal: after a timeout the message may have
        been posted after all, and deleting its file would blank its chart.
        """
        try:
            async with asyncio.timeout(self.attempt_timeout_s):
                await client.files_delete(file=file_id)
        except Exception as exc:  # noqa: BLE001 - the delivery's own error must go on unmasked
            reason = type(exc).__name__
            if isinstance(exc, SlackApiError):
                _, _, data = _parts(exc.response)
                reason = data.get("error", reason) if isinstance(data, Mapping) else reason
            log.warning("slack.file_left", file_id=file_id, channel=channel, reason=reason,
                        fix="delete it in Slack by hand (Files), or ignore it")  # fmt: skip
        else:
            log.info("slack.file_deleted", file_id=file_id, channel=channel)

    def _connect(self) -> tuple[AsyncWebClient, aiohttp.ClientSession]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        if self._client is None:
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self.base_url,
                session=self._session,
                retry_handlers=[],  # retried in `_retrying`, inside the deadline
            )
        return self._client, self._session

    async def _retrying(
        self, method: str, channel: str, deadline: float, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Run one Slack call until it succeeds, fails for good, or time runs out."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(min(remaining, self.attempt_timeout_s)):
                    return await call()
            except SlackApiError as exc:
                outcome = _classify(method, channel, *_parts(exc.response))
            except _Refused as exc:
                outcome = _classify(method, channel, exc.status, exc.headers, exc.body)
            except TimeoutError:
                outcome = _Transient("timeout", f"no answer from Slack to {method} in time")
            except aiohttp.ClientError as exc:
                outcome = _Transient("unreachable", f"{method}: {type(exc).__name__}")
            if isinstance(outcome, DeliveryPermanent):
                raise outcome from None
            attempt += 1
            ceiling = min(self.backoff_first_s * 2 ** (attempt - 1), BACKOFF_MAX_S)
            delay_s = ceiling * (0.5 + self._rng.random() / 2)
            if outcome.retry_after_s is not None:  # never sooner than Slack asked
                delay_s = max(delay_s, outcome.retry_after_s)
            if loop.time() + delay_s >= deadline:
                raise DeliveryRetryable(
                    outcome.reason,
                    f"Slack did not take the report for {channel} within {self.deadline_s:g} s "
                    f"({attempt} attempt{'s' if attempt > 1 else ''}): {outcome.detail}",
                ) from None
            log.warning(
                "slack.retrying",
                method=method,
                channel=channel,
                reason=outcome.reason,
                attempt=attempt,
                retry_in_s=round(delay_s, 3),
            )
            await asyncio.sleep(delay_s)


async def _upload(
    session: aiohttp.ClientSession, url: str, png: bytes, *, proxy: str | None
) -> None:
    """POST the bytes to the upload URL (pre-signed: no token travels there)."""
    async with session.post(url, data=png, proxy=proxy) as response:
        body = await response.read()
        if response.status != 200:
            raise _Refused(response.status, response.headers, body.decode(errors="replace"))


class _Refused(Exception):
    """The upload URL answered something other than 200."""

    def __init__(self, status: int, headers: Mapping[str, str], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        super().__init__(f"HTTP {status}")


def _parts(response: Any) -> tuple[int | None, Any, Any]:
    """Status, headers and body of slack-sdk's response (or aiohttp's, on a non-JSON body)."""
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return status, getattr(response, "headers", None), getattr(response, "data", None)


def _field(response: Any, key: str) -> str:
    value = response.get(key) if response is not None else None
    if not isinstance(value, str) or not value:
        raise DeliveryPermanent(
            "unexpected_response",
            f"Slack's answer has no {key}: check CLARITYCAST_SLACK_API_URL points at Slack",
        )
    return value


def _retry_after_s(headers: Any) -> float:
    raw = headers.get("Retry-After") if headers is not None else None
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    try:
        return max(0.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _file_not_ready(data: Mapping[str, Any]) -> bool:
    """Slack refuses a just-completed file in a block for a moment after the upload."""
    details = list(data.get("errors") or [])
    details += list((data.get("response_metadata") or {}).get("messages") or [])
    return any("slack_file" in str(detail) for detail in details)


def _classify(
    method: str, channel: str, status: int | None, headers: Any, data: Any
) -> _Transient | DeliveryPermanent:
    """What to retry, or the permanent error for what cannot work."""
    body = data if isinstance(data, Mapping) else {}
    code = body.get("error")
    code = code if isinstance(code, str) and code else None

    if status == 429 or code in ("ratelimited", "rate_limited"):
        wait_s = _retry_after_s(headers)
        return _Transient(
            "rate_limited", f"Slack rate-limited {method} (Retry-After {wait_s:g} s)", wait_s
        )
    if status is not None and (status >= 500 or status == 408):
        reason = code if code in TRANSIENT_CODES else "server_error"
        return _Transient(reason, f"Slack answered HTTP {status} to {method}")
    if code in TRANSIENT_CODES:
        return _Transient(code, f"Slack answered {code} to {method}")
    if code == "invalid_blocks" and _file_not_ready(body):
        return _Transient("file_not_ready", "Slack did not yet accept the uploaded chart")
    if code is not None:
        help_text = OPERATOR_HELP.get(code)
        if help_text is None:
            return DeliveryPermanent(code, f"Slack refused {method} for {channel} ({code})")
        needed = body.get("needed")
        message = help_text.format(channel=channel, needed=f" ({needed})" if needed else "")
        return DeliveryPermanent(code, f"{message} [{code}]")
    reason = f"http_{status}" if status else "unexpected_response"
    return DeliveryPermanent(
        reason,
        f"Slack's answer to {method} was not Slack's (HTTP {status}): "
        "check CLARITYCAST_SLACK_API_URL",
    )
