from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.integration.simulator.sim_env import make_simulator

from smsgate.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = make_simulator()
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()
