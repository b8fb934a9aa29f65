"""A project's Clarity token: replaced by an operator, read by the fetch stage.

`set_token` is the one way to give a project a new token, used by
``claritycast projects set-token`` and by the HTTP API's replace-token route:
the token is checked locally first (nothing is stored if it cannot work),
sealed, and stored; a project that was "token invalid" or "token unreadable"
is active again. Its history stays, and the next tick asks for what yesterday
is missing.

`readable_token` is how the fetch stage reads it, at the last moment: a token
that cannot be decrypted marks its project "token unreadable", with what to
do, and the project is not fetched; nothing crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from claritycast.clarity.token import check_token, fingerprint, plain_token
from claritycast.clock import Clock
from claritycast.errors import InputError, TokenKeyMissing, TokenUnreadable
from claritycast.logs import get_logger
from claritycast.store.core import Store
from models.documents import Project, ProjectStatus

log = get_logger(__name__)

# A new token brings these back; a paused project stays paused.
REACTIVATED_FROM = (ProjectStatus.TOKEN_INVALID, ProjectStatus.TOKEN_UNREADABLE)


@dataclass(frozen=True)
class TokenSet:
    """What `set_token` did: the project now, the status it left, when the token expires."""

    project: Project
    previous_status: str
    expires_at: datetime | None

    @property
    def reactivated(self) -> bool:
        return self.previous_status in REACTIVATED_FROM


async def set_token(store: Store, project_ref: str, token: str, clock: Clock) -> TokenSet:
    """Give a project (label or id) a new Clarity token.

    Raises `ClarityTokenInvalid` when the token cannot work (checked before
    anything is stored), `InputError` for an unknown project, and `StoreError`
    when MongoDB fails. The token is never in an error or a log line.
    """
    claims = check_token(token, clock.now())
    project = await store.find_project(project_ref)
    if project is None:
        raise InputError(f"no project {project_ref!r}; see `claritycast sources`")
    sealed = store.seal_token(plain_token(token), project.project_id)
    before = await store.replace_token(
        project.project_id, sealed, claims.expires_at, fingerprint(token)
    )
    if before is None:
        raise InputError(f"project {project.label!r} was removed meanwhile")
    previous = await store.reactivate(project.project_id, REACTIVATED_FROM) or before.status
    after = await store.get_project(project.project_id)
    assert after is not None
    log.info("project.token_set", project=project.project_id, previous_status=previous,
             status=after.status)  # fmt: skip
    return TokenSet(after, previous, claims.expires_at)


def what_to_do(exc: TokenUnreadable, project_id: str) -> str:
    """The operator's way out of an unreadable token."""
    set_token_hint = f"give it a new token: `claritycast projects set-token {project_id}`"
    if isinstance(exc, TokenKeyMissing):
        return (
            "put that key back in CLARITYCAST_SECRET_KEYS on every worker and run "
            f"`claritycast keys rotate`, or {set_token_hint}"
        )
    return set_token_hint


def unreadable_reason(exc: TokenUnreadable, project_id: str) -> str:
    """The project's status reason: why, and what the operator does about it."""
    return f"{exc.kind}: {exc}; {what_to_do(exc, project_id)}"


async def readable_token(store: Store, project: Project) -> str | None:
    """The project's token, or None after marking the project "token unreadable"."""
    try:
        return store.open_token(project)
    except TokenUnreadable as exc:
        changed = await store.change_project_status(
            project.project_id,
            ProjectStatus.ACTIVE,
            ProjectStatus.TOKEN_UNREADABLE,
            unreadable_reason(exc, project.project_id),
        )
        if changed:
            log.error("project.token_unreadable", project=project.project_id, why=exc.kind,
                      key_id=exc.key_id, fix=what_to_do(exc, project.project_id))  # fmt: skip
        return None
