"""Prometheus metrics of a worker: what its stages did, counted where it happens.

Counters only go up and are per process; Prometheus sums them over workers.
Label sets are bounded: stages, outcomes and destinations are fixed lists,
and projects are the connected ones (a quota gauge per project a worker
decides for). ``docs/operations.md`` describes every metric and alert rules.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The ``*_created`` series (a counter's creation time) double every series for nothing.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "claritycast_events",
    "Messages a stage handled, by outcome: ok, or dead_letter (the handler failed)",
    ["stage", "outcome"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "claritycast_stage_seconds",
    "Time a stage took to handle one message",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
CLARITY_CALLS = Counter(
    "claritycast_clarity_calls",
    "Clarity requests made, by outcome: ok, server error, garbled response, quota exhausted, …",
    ["outcome"],
    registry=REGISTRY,
)
SNAPSHOTS_STORED = Counter(
    "claritycast_snapshots_stored",
    "Snapshots stored for the first time (redeliveries not counted)",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "claritycast_deliveries",
    "Reports that reached an end, by destination (slack, email) and outcome (sent, failed)",
    ["destination", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "claritycast_dead_letters",
    "Dead letters written, by stage",
    ["stage"],
    registry=REGISTRY,
)
QUOTA_USED = Gauge(
    "claritycast_quota_used",
    "Clarity requests counted in the last 24 h, per project (as of its last decision)",
    ["project"],
    registry=REGISTRY,
)
QUOTA_LEFT = Gauge(
    "claritycast_quota_left",
    "Clarity requests left in the last 24 h, per project (as of its last decision)",
    ["project"],
    registry=REGISTRY,
)
LAST_STORED = Gauge(
    "claritycast_project_last_stored_seconds",
    "When this worker last stored a snapshot of the project (Unix time)",
    ["project"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "claritycast_consumer_lag",
    "Messages not yet read, per topic, summed over the partitions this worker has",
    ["topic"],
    registry=REGISTRY,
)
