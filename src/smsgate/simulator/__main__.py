"""``python -m smsgate.simulator``: the same command as ``smsgate simulator``."""

from __future__ import annotations

import typer

from smsgate.cli import simulator_command

typer.run(simulator_command)
