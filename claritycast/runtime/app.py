"""The Faust app factory: one app with exactly the stages asked for.

All stages in one app (one consumer group) is the embedded default; one app
per stage group, each its own consumer group, is how a deployment scales a
stage on its own. The consumer group is the app id, so it is derived from the
stage set: every worker of the same stages joins the same group.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import AgentT, TransportT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

import agents
from agents.deps import Deps
from claritycast.clock import Clock
from claritycast.errors import StoreError
from claritycast.ingest.keys import encrypt_plain_tokens_on_start
from claritycast.logs import get_logger
from claritycast.runtime.embedded import Endpoints
from claritycast.runtime.metrics_server import MetricsServer
from claritycast.runtime.transport import KafkaTransport, SteadyFlowControl, TansuTransport
from claritycast.settings import Settings
from models.audit import Actor, ActorKind
from models.documents import WorkerBeat
from topics import Topics, TopicSpec, send_bounded

log = get_logger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
# Tansu's consumer-group join waits half the session timeout: keep it short.
EMBEDDED_SESSION_TIMEOUT_S = 4.0
DEFAULT_SESSION_TIMEOUT_S = 60.0
# A record waits up to 10 ms for others to the same partition (a project's 7 groups
# leave in a burst), so they share a batch: each batch costs Tansu about 1 KiB and a
# read-through on every fetch (`bench.ingest`: broker memory 56 -> 52 MiB, its CPU
# -12 % at 1,000 projects). Kafka's own default since 4.0 is 5 ms.
PRODUCER_LINGER_S = 0.01


class ClarityCastApp(faust.App):
    """A Faust app that owns its clients and declares its topics before use.

    ``on_start`` runs before the app's children (producer, consumer, agents)
    start, and ``on_shutdown`` after they have stopped: the database is open
    for the agents' whole life, and every topic exists with its partition
    count before anything reads or writes it.
    """

    deps: Deps
    declared: Topics
    stage_names: tuple[str, ...]

    tansu: bool = False
    # What to do when an agent dies anyway: the worker sets it to stop with a non-zero exit.
    on_fatal: Callable[[BaseException], None] | None = None

    def _new_transport(self) -> TransportT:
        kind = TansuTransport if self.tansu else KafkaTransport
        return kind(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return SteadyFlowControl(loop=self.loop)

    metrics: MetricsServer | None = None

    async def on_start(self) -> None:
        await super().on_start()
        await self.deps.open()
        await self.declared.declare_all()
        if self.metrics is not None:
            await self.metrics.start()
        if self.deps.store.keyring is not None:
            # Before the fetch stage reads a token: what an older version stored plain is sealed.
            worker = Actor(ActorKind.WORKER, f"{socket.gethostname()}:{os.getpid()}")
            await encrypt_plain_tokens_on_start(
                self.deps.store, self.send_to, worker, self.deps.clock.now()
            )

    async def send_to(self, spec: TopicSpec, key: str, record: faust.Record) -> None:
        """Send one record on a declared topic, within the size bound."""
        await send_bounded(self.declared[spec], key, record)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.deps.close()

    async def _on_agent_error(self, agent: AgentT, exc: BaseException) -> None:
        """An agent died despite `agents.guard`: a bug outside a handler. Never run on without it.

        Faust would log ``Crashed`` and keep the worker up without that stage;
        instead the worker stops with a non-zero exit, so that ``up`` (or the
        orchestrator) starts a fresh one, which resumes from the committed offsets.
        """
        await super()._on_agent_error(agent, exc)
        log.critical("agent.crashed", agent=agent.name, error=str(exc), kind=type(exc).__name__)
        if self.on_fatal is not None:
            self.on_fatal(exc)


def app_id_for(settings: Settings, stage_names: Iterable[str]) -> str:
    """The consumer group of a stage set: the plain app id when it runs every stage."""
    names = tuple(stage_names)
    if set(names) == set(agents.STAGES):
        return settings.app_id
    return f"{settings.app_id}-{'-'.join(names)}"


def is_tansu(settings: Settings, endpoints: Endpoints) -> bool:
    """Whether the broker is Tansu, whose quirks need the settings below."""
    if settings.kafka_flavour == "auto":
        return endpoints.embedded_kafka
    return settings.kafka_flavour == "tansu"


def faust_options(settings: Settings, endpoints: Endpoints, app_id: str) -> dict[str, Any]:
    """Faust settings; the Tansu workarounds apply only to the embedded broker."""
    options: dict[str, Any] = {
        "broker": endpoints.kafka_url,
        "store": "memory://",
        "autodiscover": False,
        "web_enabled": False,
        "datadir": str(settings.data_dir / "faust" / app_id),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger": PRODUCER_LINGER_S,
    }
    if is_tansu(settings, endpoints):
        session_s = settings.broker_session_timeout_s or EMBEDDED_SESSION_TIMEOUT_S
        options |= {
            "broker_session_timeout": session_s,
            "broker_heartbeat_interval": max(session_s / 4, 0.25),
        }
    elif settings.broker_session_timeout_s:
        options |= {
            "broker_session_timeout": settings.broker_session_timeout_s,
            "broker_heartbeat_interval": max(settings.broker_session_timeout_s / 4, 0.25),
        }
    return options


def create_app(
    settings: Settings, stages: Iterable[str], endpoints: Endpoints, clock: Clock | None = None
) -> ClarityCastApp:
    """Build an app with exactly ``stages`` registered (names, groups or ``all``).

    ``clock`` is the time every stage uses (the real one unless a test or the
    demo injects another).
    """
    chosen = agents.select(stages)
    names = tuple(stage.name for stage in chosen)
    app_id = app_id_for(settings, names)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = ClarityCastApp(app_id, **faust_options(settings, endpoints, app_id))
    app.tansu = is_tansu(settings, endpoints)
    app.stage_names = names
    # Only the fetch stage opens Clarity tokens: only its workers need (and get) the key.
    app.deps = Deps.build(settings, endpoints.mongodb_url, clock, opens_tokens="fetch" in names)
    app.declared = Topics(app, settings.topic_prefix, settings.partitions)
    for stage in chosen:
        stage.register(app, app.declared, app.deps)
    if settings.metrics_port is not None:
        app.metrics = MetricsServer(app, settings.metrics_host, settings.metrics_port)
    _add_heartbeat(app)
    return app


def _add_heartbeat(app: ClarityCastApp) -> None:
    """Every worker records itself in MongoDB, so `status` and `up` see it alive."""
    host = socket.gethostname()
    pid = os.getpid()
    started_at = datetime.now(UTC)
    worker_id = f"{host}:{pid}:{app.conf.id}"

    async def heartbeat() -> None:
        announced = False
        try:
            while not app.should_stop:
                beat = WorkerBeat(
                    worker_id=worker_id,
                    app_id=app.conf.id,
                    stages=app.stage_names,
                    host=host,
                    pid=pid,
                    started_at=started_at,
                    seen_at=datetime.now(UTC),
                    metrics_url=app.metrics.url if app.metrics is not None else None,
                )
                try:
                    await app.deps.store.beat(beat)
                except StoreError as exc:  # a missed beat must not stop the worker
                    log.warning("worker.heartbeat_failed", error=str(exc))
                else:
                    if not announced:
                        announced = True
                        log.info(
                            "worker.ready", app_id=app.conf.id, stages=",".join(app.stage_names)
                        )
                await app.sleep(HEARTBEAT_INTERVAL_S)
        finally:
            # Shutting down: if this fails, the beat simply ages out.
            with contextlib.suppress(StoreError):
                await app.deps.store.forget_worker(worker_id)

    app.task(heartbeat)
