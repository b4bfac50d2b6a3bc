"""The event loop the long-running commands choose (smsgate.eventloop)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from smsgate import eventloop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    assert eventloop.run(_loop_type(), "auto") is uvloop.Loop


def test_uvloop_by_name() -> None:
    assert eventloop.run(_loop_type(), "uvloop") is uvloop.Loop


def test_asyncio_forces_the_stdlib_loop() -> None:
    assert not issubclass(eventloop.run(_loop_type(), "asyncio"), uvloop.Loop)


def test_the_environment_decides_when_no_choice_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV_VAR, "asyncio")
    assert not issubclass(eventloop.run(_loop_type()), uvloop.Loop)
    monkeypatch.setenv(eventloop.ENV_VAR, " UVLOOP ")
    assert eventloop.run(_loop_type()) is uvloop.Loop


def test_an_unknown_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="auto, asyncio, uvloop"):
        eventloop.loop_factory("tokio")
