"""The Slack sender, against the Slack stand-in over real HTTP."""

from __future__ import annotations

import io
import json
import logging
import random
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from structlog.testing import capture_logs

from claritycast.delivery.slack import SlackReceipt, SlackSender
from claritycast.errors import ConfigError, DeliveryPermanent, DeliveryRetryable
from claritycast.logs import configure_logging
from claritycast.runtime.ports import free_port
from claritycast.settings import load_settings
from claritycast.standins.slack import SlackStandin
from models.report import Report

TOKEN = "xoxb-4242424242-7777777777-LeakCheckTokenValue"
DEADLINE_S = 3.0
FLOW = [
    "files.getUploadURLExternal",
    "upload",
    "files.completeUploadExternal",
    "chat.postMessage",
]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def make_report(**changes: object) -> Report:
    values: dict[str, object] = {
        "title": "Sessions · Shop",
        "period_label": "30 days to 28 Nov 2026",
        "summary": "Sessions rose 12% to 1,204.\nBusiest day: Tuesday.",
        "alt_text": "Line chart of daily sessions, 30 days, rising from 30 to 52",
        "png": PNG,
        "local_date": "2026-11-28",
        "note": "Data incomplete: 2026-11-28 not yet stored",
    }
    values.update(changes)
    return Report(**values)  # type: ignore[arg-type]


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandin]:
    server = SlackStandin(TOKEN)
    server.add_channel("reports")
    server.add_channel("outsiders", member=False)
    server.add_channel("old-news", archived=True)
    async with server:
        yield server


def make_sender(base_url: str, token: str = TOKEN, deadline_s: float = DEADLINE_S) -> SlackSender:
    return SlackSender(
        token, base_url, deadline_s=deadline_s, backoff_first_s=0.05, rng=random.Random(7)
    )


@pytest.fixture
async def sender(standin: SlackStandin) -> AsyncIterator[SlackSender]:
    slack = make_sender(standin.base_url)
    try:
        yield slack
    finally:
        await slack.close()


def methods(standin: SlackStandin) -> list[str]:
    return [call.method for call in standin.calls]


async def test_a_report_arrives_as_one_message_with_its_chart(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """Four calls in order; the blocks carry title, period, note, summary and the completed file."""
    report = make_report()
    receipt = await sender.send("#reports", report)

    assert methods(standin) == FLOW
    [message] = standin.messages
    assert receipt == SlackReceipt(channel=message.channel, ts=message.ts, file_id=receipt.file_id)
    assert message.channel == standin.channel("reports").id  # type: ignore[union-attr]
    assert receipt.file_id.startswith("F0")
    assert standin.files[receipt.file_id].completed
    assert message.files == {receipt.file_id: PNG}

    kinds = [block["type"] for block in message.blocks]
    assert kinds == ["header", "context", "section", "section", "image"]
    header, context, note, summary, image = message.blocks
    assert header["text"] == {"type": "plain_text", "text": "Sessions · Shop"}
    assert context["elements"][0]["text"] == "30 days to 28 Nov 2026"
    assert "Data incomplete: 2026-11-28 not yet stored" in note["text"]["text"]
    assert summary["text"]["text"] == report.summary
    assert image["slack_file"] == {"id": receipt.file_id}
    assert image["alt_text"] == report.alt_text
    assert message.text is not None
    assert "Sessions · Shop" in message.text and "Sessions rose 12%" in message.text


async def test_no_note_means_no_warning(standin: SlackStandin, sender: SlackSender) -> None:
    """Without a note the message is header, context, summary and image."""
    await sender.send("reports", make_report(note=None))
    kinds = [block["type"] for block in standin.messages[0].blocks]
    assert kinds == ["header", "context", "section", "image"]


async def test_a_long_summary_is_split_into_valid_sections(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """A 4,000-character summary (the summariser's maximum) fits Slack's 3,000-per-section."""
    summary = "\n".join(f"Line {i}: " + "x" * 90 for i in range(40))
    await sender.send("#reports", make_report(summary=summary))
    sections = [b["text"]["text"] for b in standin.messages[0].blocks if b["type"] == "section"]
    assert len(sections) == 3  # the note, then the summary in two pieces
    assert "\n".join(sections[1:]) == summary


async def test_a_long_single_line_is_split_not_lost(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """One long line, longer still once escaped, is cut at spaces, every word kept."""
    summary = " ".join(f"w{i}&x" for i in range(800))
    await sender.send("#reports", make_report(summary=summary, note=None))
    sections = [b["text"]["text"] for b in standin.messages[0].blocks if b["type"] == "section"]
    assert len(sections) == 3 and all(len(text) <= 3000 for text in sections)
    assert " ".join(sections).split() == summary.replace("&", "&amp;").split()


async def test_untrusted_text_cannot_mention_or_link(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """`<!channel>`, `<https://…|…>` and `&` in summary, title and note reach Slack escaped."""
    hostile = "Alert <!channel> & see <https://evil.example|your bank>"
    await sender.send(
        "#reports", make_report(title="A <b> & C", summary=hostile, note="note <@U123>")
    )
    [message] = standin.messages
    posted = json.dumps({"blocks": message.blocks, "text": message.text})
    for raw in ("<!channel>", "<https://evil", "<@U123>", "<b>"):
        assert raw not in posted
    summary = message.blocks[3]["text"]
    assert summary["text"] == (
        "Alert &lt;!channel&gt; &amp; see &lt;https://evil.example|your bank&gt;"
    )
    assert summary["verbatim"] is True
    assert message.blocks[0]["text"]["text"] == "A &lt;b&gt; &amp; C"


def read_outbox(stem: Path) -> tuple[dict[str, Any], bytes]:
    payload = json.loads(Path(f"{stem}.json").read_text(encoding="utf-8"))
    return payload, Path(f"{stem}.png").read_bytes()


async def test_the_outbox_keeps_each_message_and_its_chart(tmp_path: Path) -> None:
    """With an outbox the stand-in writes <channel>-<ts>.json and the PNG beside it."""
    server = SlackStandin(TOKEN, outbox=tmp_path)
    server.add_channel("reports")
    async with server as base_url:
        slack = make_sender(base_url)
        try:
            receipt = await slack.send("#reports", make_report())
        finally:
            await slack.close()
    payload, png = read_outbox(tmp_path / "slack" / f"reports-{receipt.ts}")
    assert payload["channel"] == receipt.channel
    assert payload["files"] == [receipt.file_id]
    assert payload["blocks"][-1]["slack_file"]["id"] == receipt.file_id
    assert png == PNG


async def test_rate_limit_waits_for_retry_after(standin: SlackStandin, sender: SlackSender) -> None:
    """A 429 with Retry-After: 1 is retried no sooner than a second later, then succeeds."""
    standin.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    await sender.send("#reports", make_report())
    first, second = standin.calls_to("chat.postMessage")
    assert (first.status, first.error) == (429, "ratelimited")
    assert second.status == 200 and second.error is None
    assert second.at - first.at >= 1.0
    assert len(standin.messages) == 1


async def test_retry_after_past_the_deadline_gives_up_at_once(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """Retry-After beyond the deadline: DeliveryRetryable now, without waiting it out."""
    standin.fail_next("files.getUploadURLExternal", "ratelimited", retry_after=30)
    started = time.monotonic()
    with pytest.raises(DeliveryRetryable) as caught:
        await sender.send("#reports", make_report())
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == "rate_limited"
    assert "Retry-After 30 s" in str(caught.value)
    assert methods(standin) == ["files.getUploadURLExternal"]


@pytest.mark.parametrize("method", FLOW)
@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried_then_succeed(
    standin: SlackStandin, sender: SlackSender, method: str, status: int
) -> None:
    """A 5xx at any step is retried with backoff, and the report still arrives once."""
    standin.fail_next(method, status=status)
    await sender.send("#reports", make_report())
    assert [c.status for c in standin.calls_to(method)] == [status, 200]
    assert len(standin.messages) == 1


@pytest.mark.parametrize("code", ["internal_error", "fatal_error", "service_unavailable"])
async def test_transient_slack_codes_are_retried(
    standin: SlackStandin, sender: SlackSender, code: str
) -> None:
    """Slack's own transient error codes, even on HTTP 200, are retried."""
    standin.fail_next("files.completeUploadExternal", code, times=2)
    await sender.send("#reports", make_report())
    assert [c.error for c in standin.calls_to("files.completeUploadExternal")] == [code, code, None]


async def test_a_file_not_ready_yet_is_posted_again(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """Slack refuses a just-uploaded file in a block for a moment: the post is retried."""
    standin.files_not_ready(times=2)
    receipt = await sender.send("#reports", make_report())
    assert [c.error for c in standin.calls_to("chat.postMessage")] == [
        "invalid_blocks",
        "invalid_blocks",
        None,
    ]
    assert methods(standin).count("files.getUploadURLExternal") == 1, "the file is not re-uploaded"
    assert standin.messages[0].files == {receipt.file_id: PNG}


async def test_server_errors_until_the_deadline_are_retryable(standin: SlackStandin) -> None:
    """5xx every time: several attempts, then DeliveryRetryable before the deadline."""
    standin.fail_next("chat.postMessage", status=502, times=1000)
    slack = make_sender(standin.base_url, deadline_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryRetryable) as caught:
            await slack.send("#reports", make_report())
    finally:
        await slack.close()
    assert time.monotonic() - started <= 1.2
    assert caught.value.reason == "server_error"
    assert len(standin.calls_to("chat.postMessage")) >= 3
    assert standin.messages == []


@pytest.mark.parametrize(
    ("reason", "channel", "failing_method"),
    [
        ("invalid_auth", "#reports", "files.getUploadURLExternal"),
        ("token_revoked", "#reports", "files.getUploadURLExternal"),
        ("not_in_channel", "#outsiders", "chat.postMessage"),
        ("channel_not_found", "#nowhere", "chat.postMessage"),
        ("is_archived", "#old-news", "chat.postMessage"),
    ],
)
async def test_permanent_errors_are_never_retried(
    standin: SlackStandin, reason: str, channel: str, failing_method: str
) -> None:
    """Each permanent refusal raises DeliveryPermanent with Slack's code, after one call."""
    token = "xoxb-0000000000-not-the-right-one" if reason == "invalid_auth" else TOKEN
    if reason == "token_revoked":
        standin.revoke_token()
    slack = make_sender(standin.base_url, token=token)
    try:
        with pytest.raises(DeliveryPermanent) as caught:
            await slack.send(channel, make_report())
    finally:
        await slack.close()
    assert caught.value.reason == reason
    assert [(c.method, c.error) for c in standin.calls_to(failing_method)] == [
        (failing_method, reason)
    ]
    refused_at = max(i for i, call in enumerate(standin.calls) if call.method == failing_method)
    after = [(call.method, call.error) for call in standin.calls[refused_at + 1 :]]
    if failing_method == "chat.postMessage":
        assert channel in str(caught.value)
        assert after == [("files.delete", None)], "only the uploaded chart is taken back"
    else:
        assert after == [], "nothing is called after the refusal"
    assert standin.messages == []
    assert standin.files == {}, "no chart is left in the workspace"


async def test_not_in_channel_tells_the_operator_to_invite_the_app(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """The message names the channel and what to do."""
    with pytest.raises(DeliveryPermanent) as caught:
        await sender.send("#outsiders", make_report())
    assert "invite" in str(caught.value) and "#outsiders" in str(caught.value)


@pytest.mark.parametrize("code", ["missing_scope", "msg_too_long", "something_new"])
async def test_other_slack_codes_are_permanent(
    standin: SlackStandin, sender: SlackSender, code: str
) -> None:
    """Any other error code is a bad request: permanent, with the code as reason."""
    standin.fail_next("chat.postMessage", code)
    with pytest.raises(DeliveryPermanent) as caught:
        await sender.send("#reports", make_report())
    assert caught.value.reason == code
    assert len(standin.calls_to("chat.postMessage")) == 1


async def test_a_url_that_is_not_slack_is_permanent(standin: SlackStandin) -> None:
    """A base URL answering 404 pages (a wrong CLARITYCAST_SLACK_API_URL) pauses, no retry."""
    slack = make_sender(standin.root_url + "/wrong/")
    try:
        with pytest.raises(DeliveryPermanent) as caught:
            await slack.send("#reports", make_report())
    finally:
        await slack.close()
    assert caught.value.reason == "http_404"
    assert "CLARITYCAST_SLACK_API_URL" in str(caught.value)


async def test_an_unreachable_slack_is_retryable_within_the_deadline() -> None:
    """Connection refused: retried with backoff, then DeliveryRetryable before the deadline."""
    slack = make_sender(f"http://127.0.0.1:{free_port()}/api/", deadline_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryRetryable) as caught:
            await slack.send("#reports", make_report())
    finally:
        await slack.close()
    assert time.monotonic() - started <= 1.2
    assert caught.value.reason == "unreachable"


async def test_a_slack_that_does_not_answer_times_out(standin: SlackStandin) -> None:
    """No answer within the deadline: DeliveryRetryable('timeout'), not a hang."""
    standin.latency_s = 5.0
    slack = make_sender(standin.base_url, deadline_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryRetryable) as caught:
            await slack.send("#reports", make_report())
    finally:
        await slack.close()
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == "timeout"


async def test_the_token_never_reaches_exceptions_or_logs(
    standin: SlackStandin, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """slack-sdk's DEBUG records, our warnings and every exception, traceback included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="slack_sdk")  # configure_logging quietens it
    failures: list[Exception] = []
    slack = make_sender(standin.base_url)
    try:
        await slack.send("#reports", make_report())
        standin.fail_next("chat.postMessage", "ratelimited", retry_after=0)
        await slack.send("#reports", make_report())
        for channel in ("#outsiders", "#nowhere"):
            with pytest.raises(DeliveryPermanent) as caught:
                await slack.send(channel, make_report())
            failures.append(caught.value)
    finally:
        await slack.close()
    standin.fail_next("upload", status=500, times=1000)
    impatient = make_sender(standin.base_url, deadline_s=0.3)
    try:
        with pytest.raises(DeliveryRetryable) as retryable:
            await impatient.send("#reports", make_report())
        failures.append(retryable.value)
    finally:
        await impatient.close()
    wrong = make_sender(standin.base_url, token=TOKEN + "x")
    try:
        with pytest.raises(DeliveryPermanent) as refused:
            await wrong.send("#reports", make_report())
        failures.append(refused.value)
    finally:
        await wrong.close()

    assert "slack_sdk" in caplog.text, "the SDK's debug records were captured"
    assert TOKEN not in caplog.text
    for failure in failures:
        assert TOKEN not in "".join(traceback.format_exception(failure))
        assert TOKEN not in repr(failure)
    out, err = capsys.readouterr()
    assert TOKEN not in out and TOKEN not in err


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    configure_logging("WARNING", "human", stream=io.StringIO())
    structlog.reset_defaults()


async def test_slack_sdk_debug_lines_are_redacted_by_our_logging(
    standin: SlackStandin, log_output: io.StringIO
) -> None:
    """The SDK's chatter stays below WARNING even at DEBUG; what it does log is masked."""
    configure_logging("DEBUG", "json", stream=log_output)
    slack = make_sender(standin.base_url)
    try:
        await slack.send("#reports", make_report())
    finally:
        await slack.close()
    sdk = logging.getLogger("slack_sdk.web.async_base_client")
    sdk.debug("request body: %s", "quiet please")
    sdk.warning("headers: Bearer %s", TOKEN)
    output = log_output.getvalue()
    assert "quiet please" not in output
    assert "slack_sdk.web.async_base_client" in output
    assert "slack.posted" in output
    assert TOKEN not in output


async def test_from_settings_needs_a_token() -> None:
    """No CLARITYCAST_SLACK_TOKEN: a ConfigError naming it, before any request."""
    with pytest.raises(ConfigError) as caught:
        SlackSender.from_settings(load_settings())
    assert caught.value.setting == "CLARITYCAST_SLACK_TOKEN"


async def test_from_settings_uses_url_token_and_deadline(standin: SlackStandin) -> None:
    """The sender built from settings talks to the configured API with the configured token."""
    settings = load_settings(
        slack_token=TOKEN, slack_api_url=standin.base_url, delivery_deadline_s=2.0
    )
    slack = SlackSender.from_settings(settings)
    try:
        assert slack.deadline_s == 2.0
        receipt = await slack.send("#reports", make_report())
    finally:
        await slack.close()
    assert receipt.ts == standin.messages[0].ts


async def test_a_session_passed_in_is_used_and_left_open(standin: SlackStandin) -> None:
    """The caller's aiohttp session carries every call and outlives the sender."""
    async with aiohttp.ClientSession() as session:
        slack = SlackSender(TOKEN, standin.base_url, deadline_s=DEADLINE_S, session=session)
        await slack.send("#reports", make_report())
        await slack.close()
        assert not session.closed
    assert methods(standin) == FLOW


# A chart left behind: deleted after a permanent refusal, never after a transient one.


@pytest.mark.parametrize(
    ("channel", "failing_method", "reason"),
    [
        ("#outsiders", "chat.postMessage", "not_in_channel"),
        ("#old-news", "chat.postMessage", "is_archived"),
        ("#reports", "files.completeUploadExternal", "invalid_arguments"),
    ],
)
async def test_a_chart_refused_for_good_is_deleted_from_the_workspace(
    standin: SlackStandin, sender: SlackSender, channel: str, failing_method: str, reason: str
) -> None:
    """After a permanent refusal, the uploaded file is deleted with files.delete, once."""
    if failing_method != "chat.postMessage":
        standin.fail_next(failing_method, reason)
    with capture_logs() as logged, pytest.raises(DeliveryPermanent) as caught:
        await sender.send(channel, make_report())
    assert caught.value.reason == reason
    (file_id,) = standin.deleted
    assert standin.files == {}
    assert [(c.method, c.error) for c in standin.calls_to("files.delete")] == [
        ("files.delete", None)
    ]
    assert [(e["event"], e["file_id"]) for e in logged if e["event"].startswith("slack.file")] == [
        ("slack.file_deleted", file_id)
    ]


async def test_a_failed_delete_is_logged_and_the_refusal_still_raised(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """Slack refusing the delete too changes nothing for the caller: a warning, the first error."""
    standin.fail_next("files.delete", "internal_error")
    with capture_logs() as logged, pytest.raises(DeliveryPermanent) as caught:
        await sender.send("#outsiders", make_report())
    assert caught.value.reason == "not_in_channel"
    (left,) = [entry for entry in logged if entry["event"] == "slack.file_left"]
    assert left["reason"] == "internal_error"
    assert left["file_id"] in standin.files, "the stand-in still has it: the delete failed"
    assert standin.deleted == []


async def test_a_delete_answered_by_an_error_page_is_logged_never_raised(
    standin: SlackStandin, sender: SlackSender
) -> None:
    """A proxy's 500 page instead of Slack's answer to files.delete: logged, never raised."""
    standin.fail_next("files.delete", status=500)
    with capture_logs() as logged, pytest.raises(DeliveryPermanent) as caught:
        await sender.send("#old-news", make_report())
    assert caught.value.reason == "is_archived"
    (left,) = [entry for entry in logged if entry["event"] == "slack.file_left"]
    assert left["file_id"] in standin.files
    assert [(c.method, c.status) for c in standin.calls_to("files.delete")] == [
        ("files.delete", 500)
    ], "one try: a cleanup does not hold up the delivery"


async def test_a_transient_failure_keeps_the_file(standin: SlackStandin) -> None:
    """A post that may yet have reached Slack (5xx until the deadline) is no reason to delete."""
    standin.fail_next("chat.postMessage", status=500, times=1000)
    sender = make_sender(standin.base_url, deadline_s=0.5)
    try:
        with pytest.raises(DeliveryRetryable):
            await sender.send("#reports", make_report())
    finally:
        await sender.close()
    assert standin.calls_to("files.delete") == []
    assert len(standin.files) == 1
