"""Key rotation, and the one-off encryption of the plain tokens an older version stored.

Rotating a key, with workers running all along:

1. ``claritycast keys new`` prints a key; put it first in
   ``CLARITYCAST_SECRET_KEYS`` wherever the key is given (the workers running
   the fetch stage, the commands that store tokens), keeping the old one
   after it, and restart the workers: they open tokens sealed with either.
2. ``claritycast keys rotate`` re-encrypts every stored token with the first
   key. A worker that reads a token mid-rotation opens it with whichever key
   it was sealed with, so nothing fails and nothing is fetched twice. Each
   token is swapped by a compare-and-set: an interrupted rotation is run again
   and goes on where it stopped; a token replaced meanwhile is left alone.
3. Once it reports nothing left on an older key, drop the old key from the
   list and restart the workers.

A project marked "token unreadable" because its key was missing is active
again after a rotation that can read its token (the key was put back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from claritycast.clarity.token import check_token, fingerprint, plain_token
from claritycast.errors import ClarityTokenInvalid, TokenUnreadable
from claritycast.ingest.audit import record
from claritycast.ingest.connect import SendFn
from claritycast.logs import get_logger
from claritycast.store.core import Store
from models.audit import Action, Actor
from models.documents import Project, ProjectStatus

log = get_logger(__name__)

RESEAL_TRIES = 3


async def encrypt_plain_tokens(store: Store, now: datetime) -> list[str]:
    """Seal every plain token an older version stored; the projects this call sealed.

    Idempotent and safe from several processes at once: each token is swapped
    by a compare-and-set, so exactly one of them seals it.
    """
    sealed = []
    for project_id, stored in await store.plain_tokens():
        token = plain_token(stored)
        try:
            expires_at = check_token(token, now).expires_at
        except ClarityTokenInvalid:  # expired or odd: Clarity will say so at the next call
            expires_at = None
        new = store.seal_token(token, project_id)
        if await store.seal_plain_token(project_id, stored, new, expires_at, fingerprint(token)):
            sealed.append(project_id)
    return sealed


async def encrypt_plain_tokens_on_start(
    store: Store, send: SendFn, actor: Actor, now: datetime
) -> list[str]:
    """At a worker's start: seal what an older version left plain, each on the audit trail."""
    sealed = await encrypt_plain_tokens(store, now)
    for project_id in sealed:
        await record(store, send, actor=actor, action=Action.PROJECT_ENCRYPT_TOKEN,
                     object=f"project:{project_id}", detail="a plain token from an older "
                     f"version, encrypted with key {store.keys.writer.key_id}", at=now)  # fmt: skip
    if sealed:
        log.warning("tokens.encrypted", projects=len(sealed), key_id=store.keys.writer.key_id)
    return sealed


@dataclass(frozen=True)
class Rotation:
    """What a rotation did, by project id; ``left`` says why each token left behind was."""

    key_id: str
    resealed: tuple[str, ...]
    current: tuple[str, ...]
    encrypted: tuple[str, ...]
    reactivated: tuple[str, ...]
    left: tuple[tuple[str, str], ...]

    @property
    def complete(self) -> bool:
        """Every stored token is on the first key: older keys may be dropped."""
        return not self.left

    def describe(self) -> str:
        parts = [
            f"{len(self.resealed)} token(s) re-encrypted with key {self.key_id}",
            f"{len(self.current)} already on it",
        ]
        if self.encrypted:
            parts.append(f"{len(self.encrypted)} plain token(s) encrypted")
        if self.reactivated:
            parts.append(f"reactivated {', '.join(self.reactivated)}")
        if self.left:
            each = ", ".join(f"{project_id} ({why})" for project_id, why in self.left)
            parts.append(f"{len(self.left)} left on an older key: {each}")
        return "; ".join(parts)


async def rotate_keys(store: Store, now: datetime) -> Rotation:
    """Re-encrypt every stored token with the first key (resumable, safe beside workers)."""
    keys = store.keys
    encrypted = await encrypt_plain_tokens(store, now)
    resealed: list[str] = []
    current: list[str] = []
    reactivated: list[str] = []
    left: list[tuple[str, str]] = []
    for project in await store.projects():
        if project.sealed_token is None:
            continue
        try:
            done = await _reseal(store, project)
        except TokenUnreadable as exc:
            left.append((project.project_id, f"{exc.kind}: {exc}"))
            continue
        (resealed if done else current).append(project.project_id)
        if project.status == ProjectStatus.TOKEN_UNREADABLE and await store.reactivate(
            project.project_id, (ProjectStatus.TOKEN_UNREADABLE,)
        ):
            reactivated.append(project.project_id)
    rotation = Rotation(
        keys.writer.key_id, tuple(resealed), tuple(current), tuple(encrypted),
        tuple(reactivated), tuple(left),
    )  # fmt: skip
    log.info("keys.rotated", key_id=keys.writer.key_id, resealed=len(resealed),
             current=len(current), left=len(left))  # fmt: skip
    return rotation


async def _reseal(store: Store, project: Project) -> bool:
    """True when this call moved the token to the first key; False when it was on it already."""
    keys = store.keys
    for _ in range(RESEAL_TRIES):
        sealed = project.sealed_token
        assert sealed is not None
        token = keys.open(sealed, project.project_id)
        if keys.is_current(sealed):
            return False
        resealed = keys.seal(token, project.project_id)
        if await store.reseal_token(project.project_id, sealed, resealed):
            return True
        fresh = await store.get_project(project.project_id)  # replaced meanwhile: look again
        if fresh is None or fresh.sealed_token is None:
            return False
        project = fresh
    raise TokenUnreadable("it changed on every try: run the rotation again", None)
