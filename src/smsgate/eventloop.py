"""Which asyncio event loop the long-running commands run on.

uvloop (libuv, in C) is installed with uvicorn's standard extras; every part of the gateway
is network-bound on the event loop (HTTP, SMPP, callbacks, the database drivers' hand-overs),
and uvloop runs that loop with markedly less CPU per event than the stdlib loop. ``auto``
takes uvloop where it can be imported and the stdlib loop otherwise (Windows, or a build
without it); ``SMSGATE_EVENT_LOOP=asyncio`` forces the stdlib loop, e.g. to rule the loop
out when a problem is being chased.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

CHOICES: Final = ("auto", "asyncio", "uvloop")
ENV_VAR: Final = "SMSGATE_EVENT_LOOP"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (default: the environment, else ``auto``); None means the
    stdlib loop. ``ValueError`` for an unknown choice, ``ImportError`` when uvloop is asked
    for by name and missing."""
    wanted = (choice or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if wanted not in CHOICES:
        raise ValueError(f"{ENV_VAR}: {wanted!r} is not one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if wanted == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
