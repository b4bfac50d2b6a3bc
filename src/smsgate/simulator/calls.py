"""Incoming calls: the simulator plays the telephony side that tells the gateway a subscriber
called one of its verification numbers (seed 004, "verification by call").

The event goes to the gateway's operator intake, ``POST {gateway_url}/operators/{operator}/calls``
with ``{"call_id", "from", "to"}`` and ``Authorization: Bearer <intake secret>``. In-process
(``smsgate demo``) any :data:`CallSink` callable can stand in for the HTTP hop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2


@dataclass(frozen=True, slots=True)
class CallEvent:
    operator: str
    call_id: str
    caller: str  # the subscriber's number, "from"
    called: str  # the number dialled, "to"

    def to_json(self) -> dict[str, str]:
        return {"call_id": self.call_id, "from": self.caller, "to": self.called}


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What the gateway answered: its HTTP status and body (parsed JSON when it is JSON)."""

    status_code: int
    body: Any

    @property
    def accepted(self) -> bool:
        return 200 <= self.status_code < 300


CallSink = Callable[[CallEvent], Awaitable[CallOutcome]]


class CallForwardingError(Exception):
    """The gateway could not be reached."""


class HttpCallSink:
    """Forwards call events to the gateway's HTTP intake over one pooled client."""

    def __init__(
        self,
        gateway_url: str,
        secret_for: Callable[[str], str | None],
        *,
        timeout: float = 10.0,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self._secret_for = secret_for
        self._client = client or httpx2.AsyncClient(timeout=timeout)

    async def __call__(self, event: CallEvent) -> CallOutcome:
        headers = {}
        secret = self._secret_for(event.operator)
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        url = f"{self.gateway_url}/operators/{event.operator}/calls"
        try:
            response = await self._client.post(url, json=event.to_json(), headers=headers)
        except httpx2.HTTPError as exc:
            raise CallForwardingError(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return CallOutcome(response.status_code, body)

    async def aclose(self) -> None:
        await self._client.aclose()
