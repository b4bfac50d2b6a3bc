"""``smsgate simulator`` turns its flags into the simulator's options, and refuses bad ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smsgate.cli import app
from smsgate.simulator import runner
from smsgate.simulator.config import SimulatorConfig

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorConfig]:
    """What the command would run the simulator with, instead of running it."""
    seen: list[SimulatorConfig] = []

    async def record(loaded: SimulatorConfig, **_where: Any) -> None:
        seen.append(loaded)

    monkeypatch.setattr(runner, "run_simulator", record)
    return seen


def test_window_reaches_the_simulator(started: list[SimulatorConfig]) -> None:
    result = CliRunner().invoke(app, ["simulator", "--config", str(SAMPLE), "--window", "1"])
    assert result.exit_code == 0, result.output
    [loaded] = started
    assert loaded.options.window == 1


def test_the_default_window(started: list[SimulatorConfig]) -> None:
    result = CliRunner().invoke(app, ["simulator", "--config", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert started[0].options.window == 1000


def test_a_window_below_one_is_refused(started: list[SimulatorConfig]) -> None:
    result = CliRunner().invoke(app, ["simulator", "--config", str(SAMPLE), "--window", "0"])
    assert result.exit_code == 2
    assert "--window: at least 1" in result.stderr
    assert started == []
