"""delivered: send a rendered report to Slack or email, exactly once per (connection, period).

The delivery log's claim decides who sends: a redelivered message or a second
worker finds the delivery sent or held and does nothing. The receipt goes to
the log and to ``deliveries.sent`` for other services; what fails for good goes
to ``deadletters.deliver``.
"""

from __future__ import annotations

import faust
from faust.types import StreamT, TopicT

from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded
from claritycast.delivery.log import Sender
from claritycast.telemetry import DEAD_LETTERS, DELIVERIES
from models.records import ChartRendered, DeadLetter, DeliverySent
from topics import CHARTS_RENDERED, DEAD_DELIVERIES, DELIVERIES_SENT, Topics, send_bounded


async def handle(
    rendered: ChartRendered, sender: Sender, deps: Deps, sent_topic: TopicT, dead_topic: TopicT
) -> None:
    outcome = await sender.send(rendered, deps.clock.now())
    if isinstance(outcome, DeliverySent):
        await send_bounded(sent_topic, outcome.connection, outcome)
        DELIVERIES.labels(outcome.destination.split(" ")[0], "sent").inc()
    elif isinstance(outcome, DeadLetter):
        await send_bounded(dead_topic, outcome.key, outcome)
        connection = await deps.store.get_connection(rendered.connection)
        kind = connection.destination.kind.value if connection else "unknown"
        DELIVERIES.labels(kind, "failed").inc()
        DEAD_LETTERS.labels("deliver").inc()


# Reports are independent and a destination is slow (Slack: three calls per report), so
# each worker handles several at once; the delivery log's claim keeps each one single.
CONCURRENCY = 4


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the deliver agent to ``app``."""
    sender = Sender(deps.store, deps.destinations)
    sent_topic = topics[DELIVERIES_SENT]
    dead_topic = topics[DEAD_DELIVERIES]
    sink = DeadLetterSink("deliver", dead_topic, deps.store, deps.clock)

    @app.agent(topics[CHARTS_RENDERED], name="claritycast.deliver", concurrency=CONCURRENCY)
    async def deliver_agent(stream: StreamT[ChartRendered]) -> None:
        async for rendered in stream:
            await guarded(
                "deliver",
                lambda rendered=rendered: handle(rendered, sender, deps, sent_topic, dead_topic),
                message=rendered,
                key=rendered.connection,
                sink=sink,
                delivery=rendered.delivery_key,
            )
