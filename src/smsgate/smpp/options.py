"""What the owner of a session chooses: its limits, and the handler of incoming requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .framing import DEFAULT_MAX_FRAME_SIZE
from .pdu import Notification, Request, Response

IncomingPdu = Request[Any] | Notification
HandlerResult = Response | None | Awaitable[Response | None]
Handler = Callable[[IncomingPdu], HandlerResult]
"""Answers one incoming request (never enquire_link or unbind: the session does those).

Return the response (its sequence_number is filled in for you), or None for outbind and
alert_notification; raise PduError(status) to refuse with that status. A plain function is
answered at once; an ``async def`` handler (or any awaitable result) runs as its own task,
up to ``handler_concurrency`` at a time, beyond which the session stops reading. So an
async handler must not wait for responses to requests on its own session.
"""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Limits and timers of one session (seconds for times)."""

    window: int = 10
    """Requests sent and not yet answered, at most (SMPP 3.4 §2.7.5 "windowing")."""
    response_timeout: float = 30.0
    enquire_link_interval: float | None = 30.0
    """Send enquire_link after this long without hearing from the peer; None: never."""
    inactivity_timeout: float | None = 120.0
    """Close after this long without hearing from the peer; None: never."""
    handler_concurrency: int = 256
    """Incoming requests handled at once; beyond it the session stops reading (TCP
    back-pressure). Keep it at least the peer's window."""
    unbind_timeout: float = 5.0
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    write_buffer_limit: int = 1024 * 1024
    """Above this many unsent octets, senders wait for the socket to drain."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.handler_concurrency < 1:
            raise ValueError("window and handler_concurrency must be at least 1")
        if self.max_frame_size < 16:
            raise ValueError("max_frame_size must hold at least a PDU header")
