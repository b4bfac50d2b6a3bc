"""Every error the SMPP layer raises, in one screen.

SmppError
├── PduError             a frame that cannot be decoded, or a request to refuse;
│                        carries the command_status to answer with
├── PduEncodeError       a PDU whose field values cannot go on the wire (also ValueError)
└── SessionError
    ├── ConnectionLost   the link closed; outstanding requests have an unknown outcome
    ├── ResponseTimeout  no response in time; the request's outcome is unknown
    ├── GenericNackReceived  the peer answered generic_nack: it did not accept the request
    ├── UnexpectedResponse  the peer answered with the wrong kind of response
    ├── InvalidBindState the operation is not allowed in the session's bind state
    └── BindFailed       the peer refused a bind (command_status says why)
"""

from __future__ import annotations

from .constants import CommandStatus


class SmppError(Exception):
    """Base of everything the SMPP layer raises."""


class PduError(SmppError):
    """A PDU that is in error: undecodable on receipt, or refused by a request handler.

    ``command_status`` is what to answer (generic_nack or the operation's response);
    ``sequence_number`` and ``command_id`` are known when the header could be read.
    """

    def __init__(
        self,
        command_status: int,
        message: str = "",
        *,
        sequence_number: int | None = None,
        command_id: int | None = None,
    ) -> None:
        self.command_status = command_status
        self.sequence_number = sequence_number
        self.command_id = command_id
        super().__init__(message or _status_name(command_status))

    def __str__(self) -> str:
        detail = self.args[0] if self.args else ""
        return f"{_status_name(self.command_status)}: {detail}"


class PduEncodeError(SmppError, ValueError):
    """A field value that cannot be encoded (too long, out of range, not latin-1)."""


class SessionError(SmppError):
    """Base of the errors of a running SMPP session."""


class ConnectionLost(SessionError):
    """The connection closed before the response came: the outcome of the request is unknown."""


class ResponseTimeout(SessionError):
    """No response within the timeout: the peer may or may not have acted on the request."""

    def __init__(self, message: str, *, sequence_number: int, command_id: int) -> None:
        self.sequence_number = sequence_number
        self.command_id = command_id
        super().__init__(message)


class GenericNackReceived(SessionError):
    """The peer answered generic_nack (SMPP 3.4 §4.3): the request was not accepted."""

    def __init__(self, command_status: int, *, sequence_number: int) -> None:
        self.command_status = command_status
        self.sequence_number = sequence_number
        super().__init__(f"generic_nack {_status_name(command_status)}")


class UnexpectedResponse(SessionError):
    """A response whose command_id does not answer the request with its sequence number."""


class InvalidBindState(SessionError):
    """The operation is not allowed in the current bind state (SMPP 3.4 §2.3, table 2-1)."""


class BindFailed(SessionError):
    """The peer answered a bind with a non-zero command_status."""

    def __init__(self, command_status: int) -> None:
        self.command_status = command_status
        super().__init__(f"bind refused: {_status_name(command_status)}")


def _status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"
