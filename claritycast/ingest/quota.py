"""The quota policy as a pure function over one project's recent calls.

Rules (``shared/DESIGN.md``, "Quota policy"):

- never more than 10 requests for a project in any 24 hours: a request is
  granted only while fewer than 10 were granted in the last 24 hours plus
  `GRANT_TTL` (a grant is made within that time or not at all);
- the nightly pull's 7 requests are reserved: at most 3 manual refreshes in
  any 24 hours, so a pull (once a day) always finds its 7; at worst it waits
  the minutes until the previous night's calls are 24 hours old;
- a doubled tick or a redelivered request does not spend twice: a daily or
  connect request whose (local date, group) is already in flight (a lease,
  granted less than `LEASE` ago) is dropped.

The state is plain JSON, so it lives in a Faust table and can be rebuilt from
the durable call log in MongoDB when the table's changelog is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.documents import Call

DAILY_LIMIT = 10
DAILY_GROUPS = 7
REFRESHES_PER_DAY = DAILY_LIMIT - DAILY_GROUPS
WINDOW = timedelta(hours=24)
LEASE = timedelta(minutes=10)
# The fetch stage never makes a grant older than this; counting each call for
# 24 h plus this margin covers the gap between grant time and the moment
# Clarity counts the request.
GRANT_TTL = timedelta(minutes=2)
COUNTED_FOR = WINDOW + GRANT_TTL


@dataclass
class QuotaState:
    """One project's calls in the last 24 hours and its in-flight leases."""

    calls: list[tuple[datetime, str]] = field(default_factory=list)  # (at, reason)
    leases: dict[str, datetime] = field(default_factory=dict)  # "date/group" -> granted at

    def prune(self, now: datetime, lease: timedelta = LEASE) -> None:
        self.calls = [(at, reason) for at, reason in self.calls if at > now - COUNTED_FOR]
        self.leases = {key: at for key, at in self.leases.items() if at > now - lease}

    def forget_call(self, at: datetime, reason: str) -> None:
        """Stop counting a call that was granted but never made (its grant expired).

        The call log keeps milliseconds (BSON dates), the table microseconds.
        """
        for entry in self.calls:
            if entry[1] == reason and abs(entry[0] - at) < timedelta(milliseconds=1):
                self.calls.remove(entry)
                return

    def count_logged(self, calls: list[Call], now: datetime) -> int:
        """Count the durable log's calls this state has not seen; returns how many.

        The table's changelog is written after the call log, so a worker that
        dies between the two leaves a table a batch of calls behind its log; the log
        wins. Calls never made and calls older than the window are not counted.
        Each entry of the state stands for one logged call: a batch grants a
        project's calls at one and the same moment, so equal entries are matched
        one for one, never one entry for several calls.
        """
        unmatched = list(self.calls)
        added = 0
        for call in calls:
            if call.outcome in NEVER_MADE or call.at <= now - COUNTED_FOR:
                continue
            seen = next(
                (
                    entry
                    for entry in unmatched
                    if entry[1] == call.reason
                    and abs(entry[0] - call.at) < timedelta(milliseconds=1)
                ),
                None,
            )
            if seen is not None:
                unmatched.remove(seen)
                continue
            self.calls.append((call.at, call.reason))
            added += 1
        return added

    def used(self, now: datetime) -> int:
        return sum(1 for at, _ in self.calls if at > now - COUNTED_FOR)

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": [[at.isoformat(), reason] for at, reason in self.calls],
            "leases": {key: at.isoformat() for key, at in self.leases.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuotaState:
        return cls(
            calls=[(datetime.fromisoformat(at), reason) for at, reason in data.get("calls", [])],
            leases={k: datetime.fromisoformat(v) for k, v in data.get("leases", {}).items()},
        )

    @classmethod
    def from_calls(cls, calls: list[Call], now: datetime) -> QuotaState:
        """Rebuild from the durable call log (every call was logged before it was made).

        Calls never made (expired grants, calls skipped after a 429 or a refused
        token) do not count: Clarity never saw them.
        """
        calls = [call for call in calls if call.outcome not in NEVER_MADE]
        state = cls(
            calls=[(call.at, call.reason) for call in calls],
            leases={
                f"{call.local_date}/{call.group}": call.at
                for call in calls
                if call.outcome in ("granted", "calling") and call.reason != "refresh"
            },
        )
        state.prune(now)
        return state


# Call outcomes of grants that never became a request.
NEVER_MADE = frozenset({"expired", "skipped"})
# Call outcomes whose snapshot may still come: granted, being made, or made.
IN_FLIGHT = frozenset({"granted", "calling", "ok"})
# The words of a "not due" refusal whose group another request is fetching; a pull
# that meets one follows that group to its end (`ingest.connect.outcomes_now`).
ON_ITS_WAY = "is on its way"
# ... and of one whose group another request has already stored: the pull shows it stored.
STORED_ALREADY = "is stored already"


def in_flight(call: Call, now: datetime, lease: timedelta = LEASE) -> bool:
    """Is this call's snapshot still on its way? Past the lease it was lost: ask again."""
    return call.outcome in IN_FLIGHT and call.at > now - lease


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    next_possible_at: datetime | None = None
    duplicate: bool = False


def decide(
    state: QuotaState,
    *,
    reason: str,
    local_date: str,
    group: str,
    now: datetime,
    lease: timedelta = LEASE,
) -> Decision:
    """Grant or refuse one request; on a grant, ``state`` records the call."""
    state.prune(now, lease)
    key = f"{local_date}/{group}"
    if reason != "refresh" and key in state.leases:
        return Decision(False, f"{key} is already being fetched", duplicate=True)
    used = state.used(now)
    if used >= DAILY_LIMIT:
        next_at = min(at for at, _ in state.calls) + COUNTED_FOR
        return Decision(False, f"{used} of {DAILY_LIMIT} requests used in 24 h", next_at)
    if reason == "refresh":
        refreshes = sorted(at for at, why in state.calls if why == "refresh")
        if len(refreshes) >= REFRESHES_PER_DAY:
            return Decision(
                False,
                f"no refresh left: {REFRESHES_PER_DAY} per 24 h, the nightly pull's "
                f"{DAILY_GROUPS} are reserved",
                refreshes[0] + COUNTED_FOR,
            )
    state.calls.append((now, reason))
    if reason != "refresh":
        state.leases[key] = now
    return Decision(True, f"{used + 1} of {DAILY_LIMIT} in 24 h")


def refreshes_left(state: QuotaState, now: datetime) -> int:
    """How many manual refreshes the headroom allows right now."""
    state.prune(now)
    refreshes = sum(1 for _, why in state.calls if why == "refresh")
    return max(0, min(DAILY_LIMIT - state.used(now), REFRESHES_PER_DAY - refreshes))
