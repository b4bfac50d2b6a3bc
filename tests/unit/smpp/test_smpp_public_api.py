"""The package's public names stay as the link and simulator code expect them."""

from __future__ import annotations

import smsgate.smpp as smpp
from smsgate.smpp import BindState, CommandId, Role
from smsgate.smpp.states import allowed_commands


def test_public_names() -> None:
    assert set(smpp.__all__) >= {
        "SmppSession",
        "SessionConfig",
        "SmppServer",
        "connect",
        "serve",
        "encode",
        "decode",
        "FrameReader",
        "PduError",
        "ConnectionLost",
        "ResponseTimeout",
        "GenericNackReceived",
        "InvalidBindState",
        "BindFailed",
        "SubmitSm",
        "DeliverSm",
        "Tlvs",
    }
    for name in smpp.__all__:
        assert hasattr(smpp, name), name


def test_bind_state_table_follows_smpp_3_4_table_2_1() -> None:
    C = CommandId
    assert C.SUBMIT_SM in allowed_commands(Role.ESME, BindState.BOUND_TX)
    assert C.SUBMIT_SM in allowed_commands(Role.ESME, BindState.BOUND_TRX)
    assert C.SUBMIT_SM not in allowed_commands(Role.ESME, BindState.BOUND_RX)
    assert C.SUBMIT_SM not in allowed_commands(Role.ESME, BindState.OPEN)
    assert C.DELIVER_SM in allowed_commands(Role.SMSC, BindState.BOUND_RX)
    assert C.DELIVER_SM in allowed_commands(Role.SMSC, BindState.BOUND_TRX)
    assert C.DELIVER_SM not in allowed_commands(Role.SMSC, BindState.BOUND_TX)
    assert C.OUTBIND in allowed_commands(Role.SMSC, BindState.OPEN)
    assert C.BIND_TRANSCEIVER in allowed_commands(Role.ESME, BindState.OPEN)
    assert C.BIND_TRANSCEIVER not in allowed_commands(Role.ESME, BindState.BOUND_TRX)
    assert allowed_commands(Role.ESME, BindState.CLOSED) == frozenset()
    assert allowed_commands(Role.SMSC, BindState.CLOSED) == frozenset()
