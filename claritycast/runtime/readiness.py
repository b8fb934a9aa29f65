"""Is the service ready to do its work: the database and the broker answer, a worker is alive.

One check for ``/readyz``, ``claritycast status`` and ``up``'s ready line, so
they never disagree. Each part has a short timeout: a load balancer's probe
must get an answer, with the reason, rather than hang.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from claritycast.errors import StoreError
from claritycast.runtime.publisher import bootstrap_servers
from claritycast.store.core import Store
from models.documents import WorkerBeat

PROBE_TIMEOUT_S = 3.0
# A worker beats every 5 s; three missed beats and it counts as gone.
WORKER_FRESH_S = 20.0


@dataclass(frozen=True)
class Readiness:
    mongodb: bool
    kafka: bool
    workers: list[WorkerBeat] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.reasons


async def broker_answers(kafka_url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Does the broker answer a metadata request within ``timeout_s``?"""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers(kafka_url), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()
    return True


async def readiness(store: Store, kafka_url: str) -> Readiness:
    """The three checks, run at once; every reason that is not ready."""

    async def database() -> list[WorkerBeat] | None:
        try:
            return await asyncio.wait_for(store.live_workers(WORKER_FRESH_S), PROBE_TIMEOUT_S)
        except (StoreError, TimeoutError):
            return None

    workers, kafka = await asyncio.gather(database(), broker_answers(kafka_url))
    reasons = []
    if workers is None:
        reasons.append("MongoDB does not answer")
    elif not workers:
        reasons.append(f"no worker has reported in the last {WORKER_FRESH_S:.0f} s")
    if not kafka:
        reasons.append(f"the broker at {kafka_url} does not answer")
    return Readiness(mongodb=workers is not None, kafka=kafka, workers=workers or [],
                     reasons=reasons)  # fmt: skip
