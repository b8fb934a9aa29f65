"""People and services who may use the web process: users, API keys, sessions, failed sign-ins.

Only hashes are stored: a password's argon2id hash, an API key's SHA-256 (the
key is 256 random bits, so a fast hash is safe), a session's SHA-256. A
stolen database therefore signs nobody in. Sessions and failed sign-ins
expire by TTL index; whether a session is still usable (idle time) is
decided by the web layer from ``seen_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.operations import IndexModel

from claritycast.store.base import translated

INDEXES: dict[str, list[IndexModel]] = {
    "sessions": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expire")],
    "login_failures": [
        IndexModel([("key", ASCENDING), ("at", ASCENDING)], name="by_key_time"),
        IndexModel([("at", ASCENDING)], expireAfterSeconds=86400, name="expire"),
    ],
}


class AccountsMixin:
    """`Store` operations on users, API keys, sessions and failed sign-ins."""

    db: AsyncDatabase[dict[str, Any]]

    # Users

    async def add_user(self, document: dict[str, Any]) -> bool:
        """Store a new user; False when one with that email exists already."""
        with translated("adding a user"):
            try:
                await self.db.users.insert_one(document)
            except DuplicateKeyError:
                return False
        return True

    async def get_user(self, email: str) -> dict[str, Any] | None:
        with translated("reading a user"):
            return await self.db.users.find_one({"_id": email})

    async def users(self) -> list[dict[str, Any]]:
        with translated("listing users"):
            return [doc async for doc in self.db.users.find().sort("_id", ASCENDING)]

    async def count_users(self) -> int:
        with translated("counting users"):
            return await self.db.users.estimated_document_count()

    async def update_user(self, email: str, fields: dict[str, Any]) -> bool:
        with translated("changing a user"):
            result = await self.db.users.update_one({"_id": email}, {"$set": fields})
        return result.matched_count == 1

    async def remove_user(self, email: str) -> bool:
        with translated("removing a user"):
            result = await self.db.users.delete_one({"_id": email})
            await self.db.sessions.delete_many({"email": email})
        return result.deleted_count == 1

    # API keys

    async def add_api_key(self, document: dict[str, Any]) -> None:
        with translated("adding an API key"):
            await self.db.api_keys.insert_one(document)

    async def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        with translated("reading an API key"):
            return await self.db.api_keys.find_one({"_id": key_id})

    async def api_keys(self) -> list[dict[str, Any]]:
        with translated("listing API keys"):
            cursor = self.db.api_keys.find().sort("created_at", ASCENDING)
            return [doc async for doc in cursor]

    async def revoke_api_key(self, key_id: str, at: datetime) -> dict[str, Any] | None:
        """Revoke a key at once; the key as it was, or None when there is no such key."""
        with translated("revoking an API key"):
            return await self.db.api_keys.find_one_and_update(
                {"_id": key_id},
                {"$set": {"revoked_at": at}},
                return_document=ReturnDocument.BEFORE,
            )

    async def touch_api_key(self, key_id: str, at: datetime) -> None:
        with translated("recording an API key's use"):
            await self.db.api_keys.update_one({"_id": key_id}, {"$set": {"last_used_at": at}})

    # Sessions

    async def add_session(self, document: dict[str, Any]) -> None:
        with translated("opening a session"):
            await self.db.sessions.insert_one(document)

    async def get_session(self, session_hash: str) -> dict[str, Any] | None:
        with translated("reading a session"):
            return await self.db.sessions.find_one({"_id": session_hash})

    async def touch_session(self, session_hash: str, at: datetime, expires_at: datetime) -> None:
        with translated("recording a session's use"):
            await self.db.sessions.update_one(
                {"_id": session_hash}, {"$set": {"seen_at": at, "expires_at": expires_at}}
            )

    async def remove_session(self, session_hash: str) -> None:
        with translated("closing a session"):
            await self.db.sessions.delete_one({"_id": session_hash})

    # Failed sign-ins (rate limiting)

    async def add_login_failures(self, keys: list[str], at: datetime) -> None:
        with translated("recording a failed sign-in"):
            await self.db.login_failures.insert_many([{"key": key, "at": at} for key in keys])

    async def count_login_failures(self, key: str, since: datetime) -> int:
        with translated("counting failed sign-ins"):
            return await self.db.login_failures.count_documents({"key": key, "at": {"$gte": since}})

    async def clear_login_failures(self, key: str) -> None:
        with translated("clearing failed sign-ins"):
            await self.db.login_failures.delete_many({"key": key})
