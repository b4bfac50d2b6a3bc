"""Ban storages for the access-code tests: process memory and the real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from limits.aio.storage import RedisStorage

from smsgate.services.bans import BanList, make_storage

REDIS_URL = os.environ.get("SMSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", "redis"])
async def ban_list(request: pytest.FixtureRequest) -> AsyncIterator[BanList]:
    """A ban list on each storage; the Redis one under a prefix of its own, removed after."""
    if request.param == "memory":
        yield BanList(make_storage(None))
        return
    prefix = f"smsgate-test-{uuid.uuid4().hex[:12]}"
    storage = make_storage(REDIS_URL, key_prefix=prefix)
    assert isinstance(storage, RedisStorage)
    bans = BanList(storage)
    try:
        yield bans
    finally:
        await storage.reset()
        await bans.aclose()
