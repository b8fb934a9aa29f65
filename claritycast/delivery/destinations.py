"""One front door to every destination: Slack or email, chosen by the connection.

The senders are built on first use, so a deployment that only emails needs no
Slack token, and a missing setting fails the delivery that needs it with a
`ConfigError` naming the setting.
"""

from __future__ import annotations

from typing import Any

from claritycast.delivery.email import EmailSender
from claritycast.delivery.slack import SlackSender
from claritycast.settings import Settings
from models.delivery import Connection, DestinationKind
from models.report import Report


class Destinations:
    """Sends a report where a connection points; returns the receipt as a plain dict."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._slack: SlackSender | None = None
        self._email: EmailSender | None = None

    async def send(
        self, connection: Connection, report: Report, delivery_key: str
    ) -> dict[str, Any]:
        destination = connection.destination
        if destination.kind is DestinationKind.SLACK:
            assert destination.channel is not None
            if self._slack is None:
                self._slack = SlackSender.from_settings(self.settings)
            slack = await self._slack.send(destination.channel, report)
            return {"channel": slack.channel, "ts": slack.ts, "file_id": slack.file_id}
        if self._email is None:
            self._email = EmailSender.from_settings(self.settings)
        email = await self._email.send(
            list(destination.addresses),
            report,
            message_id=self._email.message_id_for(delivery_key),
        )
        return {
            "message_id": email.message_id,
            "recipients": list(email.recipients),
            "refused": [f"{address} ({reply})" for address, reply in email.refused],
            "response": email.response,
        }

    async def close(self) -> None:
        if self._slack is not None:
            await self._slack.close()
            self._slack = None
        self._email = None
