"""Clarity tokens in the store: sealed on the way in, opened only when asked.

The store holds the keyring it was opened with (`Store.connect(..., keyring=)`),
so every face that has a store can seal a token, and nothing it writes to
MongoDB is a plain token: `add_project` refuses one. Reading a project never
decrypts; `open_token` does, at the last moment, for the fetch stage.

Every change of a sealed token is a compare-and-set on the sealed value, so a
rotation, a replacement and the one-off encryption of an older version's
plain tokens can run at once, from any number of processes, and each token is
changed once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from claritycast.errors import ConfigError, TokenTampered
from claritycast.keyring import SECRET_KEYS_SETTING, Keyring, is_sealed
from claritycast.store.base import translated
from models.documents import Project, ProjectStatus


def ensure_sealed(project: Project) -> None:
    """Refuse to store a project whose token is not sealed: a bug, never an input."""
    if project.sealed_token is not None and not is_sealed(project.sealed_token):
        raise ValueError(
            f"project {project.project_id}: a plain token must never reach the store; "
            "seal it with Store.seal_token"
        )


class TokensMixin:
    """`Store` operations on projects' tokens."""

    db: AsyncDatabase[dict[str, Any]]
    keyring: Keyring | None

    @property
    def keys(self) -> Keyring:
        """The keyring; a store opened without one cannot touch tokens."""
        if self.keyring is None:
            raise ConfigError(
                SECRET_KEYS_SETTING,
                "this command opened the store without the keys that encrypt tokens",
            )
        return self.keyring

    def seal_token(self, token: str, project_id: str) -> str:
        return self.keys.seal(token, project_id)

    def open_token(self, project: Project) -> str:
        """The project's token in clear; a `TokenUnreadable` says why it cannot be."""
        if project.sealed_token is None:
            raise TokenTampered(None)
        return self.keys.open(project.sealed_token, project.project_id)

    async def plain_tokens(self) -> list[tuple[str, str]]:
        """(project id, plain token) of every project stored by a version before sealing."""
        with translated("finding plain tokens"):
            cursor = self.db.projects.find(
                {"token": {"$exists": True}, "sealed_token": None}, {"token": 1}
            )
            return [(doc["_id"], doc["token"]) async for doc in cursor if doc.get("token")]

    async def seal_plain_token(
        self,
        project_id: str,
        plain: str,
        sealed: str,
        expires_at: datetime | None,
        fingerprint: str | None = None,
    ) -> bool:
        """Replace an older version's plain token by its sealed form; True for the one who did."""
        with translated("encrypting a plain token"):
            result = await self.db.projects.update_one(
                {"_id": project_id, "token": plain, "sealed_token": None},
                {
                    "$set": {
                        "sealed_token": sealed,
                        "token_expires_at": expires_at,
                        "token_fingerprint": fingerprint,
                    },
                    "$unset": {"token": ""},
                },
            )
        return result.modified_count == 1

    async def replace_token(
        self,
        project_id: str,
        sealed: str,
        expires_at: datetime | None,
        fingerprint: str | None = None,
    ) -> Project | None:
        """Store a new sealed token, whatever was there; the project as it was before.

        The status is left alone here (`reactivate` decides that), so a paused
        project stays paused. Any plain token left by an older version goes.
        """
        with translated("replacing a project's token"):
            before = await self.db.projects.find_one_and_update(
                {"_id": project_id},
                {
                    "$set": {
                        "sealed_token": sealed,
                        "token_expires_at": expires_at,
                        "token_fingerprint": fingerprint,
                    },
                    "$unset": {"token": ""},
                },
                return_document=ReturnDocument.BEFORE,
            )
        return Project.from_document(before) if before else None

    async def reactivate(self, project_id: str, from_statuses: tuple[str, ...]) -> str | None:
        """Make a project active again if its status is one of ``from_statuses``; which it was."""
        for status in from_statuses:
            with translated("reactivating a project"):
                result = await self.db.projects.update_one(
                    {"_id": project_id, "status": status},
                    {"$set": {"status": ProjectStatus.ACTIVE, "status_reason": None}},
                )
            if result.modified_count == 1:
                return status
        return None

    async def reseal_token(self, project_id: str, old: str, new: str) -> bool:
        """Swap a sealed token for the same token sealed anew; False if it changed meanwhile."""
        with translated("re-encrypting a token"):
            result = await self.db.projects.update_one(
                {"_id": project_id, "sealed_token": old}, {"$set": {"sealed_token": new}}
            )
        return result.modified_count == 1
