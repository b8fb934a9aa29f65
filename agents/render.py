"""chart rendered: draw a due report from stored history, or wait for its data.

The chart and summary are stored in MongoDB under the delivery key and only
the key travels on ``charts.rendered``. A report whose data is still missing
waits (the tick looks again) until the grace period ends, then goes out marked
incomplete.
"""

from __future__ import annotations

from datetime import timedelta

import faust
from faust.types import StreamT, TopicT

from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded
from claritycast.delivery.log import Renderer
from models.records import DeliveryDue
from topics import CHARTS_RENDERED, DEAD_RENDER, DELIVERIES_DUE, Topics, send_bounded


async def handle(due: DeliveryDue, renderer: Renderer, deps: Deps, rendered_topic: TopicT) -> None:
    rendered = await renderer.render(due, deps.clock.now())
    if rendered is not None:
        await send_bounded(rendered_topic, rendered.connection, rendered)


# Reports are independent and a destination is slow (Slack: three calls per report), so
# each worker handles several at once; the delivery log's claim keeps each one single.
CONCURRENCY = 4


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the render agent to ``app``."""
    renderer = Renderer(
        deps.store, timedelta(seconds=deps.settings.delivery_grace_s), deps.summariser
    )
    rendered_topic = topics[CHARTS_RENDERED]
    sink = DeadLetterSink("render", topics[DEAD_RENDER], deps.store, deps.clock)

    @app.agent(topics[DELIVERIES_DUE], name="claritycast.render", concurrency=CONCURRENCY)
    async def render_agent(stream: StreamT[DeliveryDue]) -> None:
        async for due in stream:
            await guarded(
                "render",
                lambda due=due: handle(due, renderer, deps, rendered_topic),
                message=due,
                key=due.connection,
                sink=sink,
                delivery=due.delivery_key,
            )
