"""A real `claritycast web` process for tests, and signing in to it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from claritycast.runtime.embedded import die_with_parent
from claritycast.store.core import Store
from tests.helpers import run_cli

PASSWORD = "correct horse battery staple"


@pytest.fixture
def web_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {}


@pytest.fixture
async def web(web_env: dict[str, str], store: Store) -> AsyncIterator[str]:
    """`claritycast web` as its own process; its URL once it answers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claritycast", "web", env=web_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    assert process.stdout is not None
    url = ""
    async with asyncio.timeout(60):
        async for raw in process.stdout:
            found = re.search(r"claritycast web at (http://\S+)", raw.decode())
            if found:
                url = found.group(1)
                break
    drain = asyncio.create_task(process.stdout.read())
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()
        drain.cancel()


async def add_user(env: dict[str, str], email: str, role: str) -> None:
    code, _, err = await run_cli(
        env, "users", "add", email, "--role", role, "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, err


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/v1/session", json={"email": email, "password": password})
