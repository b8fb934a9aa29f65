"""The claim check: a Clarity answer's blocks live in MongoDB, a reference travels on Kafka.

Clarity can answer tens of megabytes (a big shop's URL breakdown: 20,000
rows and more, far past the 1,000 the documentation promises). A Kafka record
that large is refused by the producer (1 MiB by default) and by brokers, and
Tansu keeps every record in memory until it stops. So the fetch stage writes
the parsed blocks here first, and ``snapshots.fetched`` carries only their
reference, their SHA-256 and their row counts (`BlocksRef`): every record on
every topic stays under ``topics.MAX_MESSAGE_BYTES`` whatever Clarity sends.

Blocks are stored as canonical JSON (compact, in parse order), compressed
with zlib at level 1 (fast; a 36 MB URL answer becomes under 2 MB), under a
content address (``sha256:<hex>``), so writing the same answer twice is one
document, and a reader checks what it got against the digest. A compressed
answer still over `DOCUMENT_LIMIT_BYTES` (MongoDB refuses documents over
16 MiB) goes to the GridFS bucket ``blocks`` instead; its small document here
then says so.

Blocks wait for the store stage for `PENDING_FOR` (a TTL index removes them
after that), unless pinned: the store stage pins an answer it had to cut down
for reading (`claritycast.clarity.big_answers`), so the complete answer is kept with
its snapshot. That expiry is the database's, on the wall clock: it is
counted from the real time even when the chain runs on a simulated clock
(the demo, tests), which may lie weeks in the past.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Binary
from gridfs import AsyncGridFSBucket
from gridfs.errors import GridFSError, NoFile
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from claritycast.errors import StoreError
from claritycast.store.base import insert_new
from models.records import SnapshotFetched

CODEC = "zlib+json"
ZLIB_LEVEL = 1
# MongoDB's document limit is 16 MiB; leave room for the document's other fields.
DOCUMENT_LIMIT_BYTES = 15 * 1024 * 1024
PENDING_FOR = timedelta(days=7)
COLLECTION = "blocks"
BUCKET = "blocks"

INDEXES = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expire")]


class BlocksMissing(StoreError):
    """The blocks of a reference are not in the store (expired, or never written)."""


class BlocksCorrupt(StoreError):
    """The stored blocks do not match their digest: never store them as a snapshot."""


@dataclass(frozen=True)
class BlocksRef:
    """Where an answer's blocks are, how to check them, and how big they are."""

    ref: str
    sha256: str
    size_bytes: int  # canonical JSON, uncompressed
    stored_bytes: int  # as stored, compressed
    rows: dict[str, int]  # rows per block, by canonical metric name


def encode_blocks(blocks: list[dict[str, Any]]) -> bytes:
    """The canonical bytes of an answer's blocks: compact JSON in parse order."""
    return json.dumps(blocks, separators=(",", ":"), ensure_ascii=False).encode()


def row_counts(blocks: list[dict[str, Any]]) -> dict[str, int]:
    return {block["metric"]: len(block["rows"]) for block in blocks}


class BlockStore:
    """Blocks by content address, in one collection and (for the largest) one GridFS bucket.

    Errors of PyMongo are translated by the caller (`Store`), which owns the
    database and wraps every call in its ``translated`` block.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[COLLECTION]
        self.bucket = AsyncGridFSBucket(db, bucket_name=BUCKET)

    async def put(self, blocks: list[dict[str, Any]], now: datetime) -> BlocksRef:
        """Store an answer's blocks (idempotent: the same answer is one document)."""
        found, document, packed = self._prepare(blocks, now)
        if found.stored_bytes > DOCUMENT_LIMIT_BYTES:
            if await self.collection.find_one({"_id": found.ref}, {"_id": 1}) is None:
                await self._upload(found.ref, packed)
            document["gridfs"] = True
        await self.collection.update_one(
            {"_id": found.ref}, {"$setOnInsert": document}, upsert=True
        )
        return found

    async def put_many(self, answers: list[list[dict[str, Any]]], now: datetime) -> list[BlocksRef]:
        """`put` for several answers: one insert for all that fit in a document.

        An insert that skips the answers stored already (a duplicate key) does
        what `put`'s upsert does, in one statement: SecantusDB commits each
        statement of a bulk write on its own, with an fsync each. The rare answer
        too big for one document (GridFS) goes through `put` alone.
        """
        refs: list[BlocksRef] = []
        documents: dict[str, dict[str, Any]] = {}
        for blocks in answers:
            found, document, _ = self._prepare(blocks, now)
            if found.stored_bytes > DOCUMENT_LIMIT_BYTES:
                found = await self.put(blocks, now)
            else:
                documents[found.ref] = {"_id": found.ref} | document
            refs.append(found)
        if documents:
            await insert_new(self.collection, list(documents.values()))
        return refs

    def _prepare(
        self, blocks: list[dict[str, Any]], now: datetime
    ) -> tuple[BlocksRef, dict[str, Any], bytes]:
        """An answer's reference, its document (data inline when it fits) and its packed bytes."""
        raw = encode_blocks(blocks)
        sha256 = hashlib.sha256(raw).hexdigest()
        packed = zlib.compress(raw, ZLIB_LEVEL)
        found = BlocksRef(f"sha256:{sha256}", sha256, len(raw), len(packed), row_counts(blocks))
        document: dict[str, Any] = {
            "sha256": sha256,
            "codec": CODEC,
            "size_bytes": found.size_bytes,
            "stored_bytes": found.stored_bytes,
            "rows": found.rows,
            "created_at": now,
            "expires_at": datetime.now(UTC) + PENDING_FOR,
        }
        if found.stored_bytes <= DOCUMENT_LIMIT_BYTES:
            document["data"] = Binary(packed)
        return found, document, packed

    async def _upload(self, ref: str, packed: bytes) -> None:
        """Into GridFS, replacing what an interrupted upload may have left."""
        with contextlib.suppress(NoFile):
            await self.bucket.delete(ref)
        await self.bucket.upload_from_stream_with_id(ref, ref, packed)

    async def get(self, ref: str) -> list[dict[str, Any]]:
        """The blocks of ``ref``, checked against their digest."""
        document = await self.collection.find_one({"_id": ref})
        if document is None:
            raise BlocksMissing(f"the blocks {ref[:19]}… are not in the store (expired?)")
        return await self._unpack(ref, document)

    async def get_many(self, refs: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The blocks of each of ``refs`` (at most ``IN_CHUNK``), in one read for all but GridFS.

        `BlocksMissing` or `BlocksCorrupt` if any of them is unusable: the
        caller then takes them one at a time.
        """
        documents = {doc["_id"]: doc async for doc in self.collection.find({"_id": {"$in": refs}})}
        missing = [ref for ref in refs if ref not in documents]
        if missing:
            raise BlocksMissing(f"the blocks {missing[0][:19]}… are not in the store (expired?)")
        return {ref: await self._unpack(ref, document) for ref, document in documents.items()}

    async def _unpack(self, ref: str, document: dict[str, Any]) -> list[dict[str, Any]]:
        if document.get("gridfs"):
            try:
                stream = await self.bucket.open_download_stream(ref)
                packed = await stream.read()
            except GridFSError as exc:
                raise BlocksMissing(f"the blocks {ref[:19]}… are missing from GridFS") from exc
        else:
            packed = bytes(document["data"])
        try:
            raw = zlib.decompress(packed)
        except zlib.error as exc:
            raise BlocksCorrupt(f"the blocks {ref[:19]}… do not decompress") from exc
        if hashlib.sha256(raw).hexdigest() != document["sha256"]:
            raise BlocksCorrupt(f"the blocks {ref[:19]}… do not match their digest")
        blocks: list[dict[str, Any]] = json.loads(raw)
        return blocks

    async def pin(self, ref: str) -> None:
        """Keep these blocks for good: a snapshot refers to them."""
        await self.collection.update_one({"_id": ref}, {"$set": {"expires_at": None}})


def fetched_record(
    project_id: str,
    local_date: str,
    group: str,
    called_at: datetime,
    ref: BlocksRef,
    *,
    late: bool = False,
) -> SnapshotFetched:
    """The ``snapshots.fetched`` record of an answer stored aside: the 24 hours it covers."""
    return SnapshotFetched(
        project_id=project_id,
        local_date=local_date,
        group=group,
        window_start=called_at - timedelta(hours=24),
        window_end=called_at,
        fetched_at=called_at,
        blocks_ref=ref.ref,
        blocks_sha256=ref.sha256,
        blocks_bytes=ref.size_bytes,
        rows=ref.rows,
        late=late,
    )
