"""Bind states and which operations each side may send in each (SMPP 3.4 §2.3, table 2-1)."""

from __future__ import annotations

from enum import Enum

from .constants import CommandId


class BindState(Enum):
    OPEN = "open"  # connected, not bound
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    CLOSED = "closed"


class Role(Enum):
    ESME = "esme"  # the side that binds (our operator links)
    SMSC = "smsc"  # the side that accepts binds (the simulator, a merchant SMPP server)

    @property
    def peer(self) -> Role:
        return Role.SMSC if self is Role.ESME else Role.ESME


C = CommandId
_ALWAYS = frozenset({C.ENQUIRE_LINK, C.UNBIND})
_ESME_TRANSMIT = _ALWAYS | {
    C.SUBMIT_SM,
    C.SUBMIT_MULTI,
    C.DATA_SM,
    C.QUERY_SM,
    C.CANCEL_SM,
    C.REPLACE_SM,
}
_SMSC_DELIVER = _ALWAYS | {C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION}

_ALLOWED: dict[tuple[Role, BindState], frozenset[int]] = {
    (Role.ESME, BindState.OPEN): _ALWAYS
    | {C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER},
    (Role.ESME, BindState.BOUND_TX): _ESME_TRANSMIT,
    (Role.ESME, BindState.BOUND_RX): _ALWAYS,
    (Role.ESME, BindState.BOUND_TRX): _ESME_TRANSMIT,
    (Role.SMSC, BindState.OPEN): _ALWAYS | {C.OUTBIND},
    (Role.SMSC, BindState.BOUND_TX): _ALWAYS,
    (Role.SMSC, BindState.BOUND_RX): _SMSC_DELIVER,
    (Role.SMSC, BindState.BOUND_TRX): _SMSC_DELIVER,
}
_NOTHING: frozenset[int] = frozenset()

_BOUND_BY = {
    C.BIND_TRANSMITTER: BindState.BOUND_TX,
    C.BIND_RECEIVER: BindState.BOUND_RX,
    C.BIND_TRANSCEIVER: BindState.BOUND_TRX,
}


def allowed_commands(role: Role, state: BindState) -> frozenset[int]:
    """The requests ``role`` may send in ``state`` (responses are always allowed)."""
    return _ALLOWED.get((role, state), _NOTHING)


def state_after_bind(bind_command_id: int) -> BindState:
    return _BOUND_BY[CommandId(bind_command_id)]
