from smsgate.domain.text import Alphabet
from smsgate.links.settings import LinkSettings, link_settings


def settings(extra: dict[str, object] | None, **columns: object) -> LinkSettings:
    values: dict[str, object] = {
        "operator_id": "op",
        "host": "smsc.example",
        "port": 2775,
        "system_id": "gw",
        "password": "secret",
        "tps": 200,
        "window": 10,
    }
    values.update(columns)
    return link_settings(settings=extra, **values)  # type: ignore[arg-type]


def test_provisioned_keys_are_read() -> None:
    s = settings(
        {
            "system_type": "VMA",
            "bind_mode": "transmitter_receiver",
            "enquire_link_seconds": 15,
            "reconnect_max_seconds": 120,
            "source_ton": 5,
            "source_npi": 0,
            "dlr_request": False,
            "dlr_id_format": "hex",
            "concat": "sar",
            "default_alphabet": "latin1",
        }
    )
    assert s.system_type == "VMA"
    assert s.bind_mode == "transmitter_receiver"
    assert (s.enquire_link_seconds, s.reconnect_max_seconds) == (15.0, 120.0)
    assert (s.source_ton, s.source_npi, s.dlr_request) == (5, 0, False)
    assert (s.dlr_id_format, s.concat) == ("hex", "sar")
    assert s.default_alphabet is Alphabet.LATIN1


def test_missing_or_wrong_values_fall_back_to_defaults() -> None:
    s = settings(
        {
            "bind_mode": "both",
            "enquire_link_seconds": "often",
            "dlr_id_format": "oct",
            "concat": "magic",
            "source_ton": True,
            "dlr_request": None,
        },
        window=0,
        tps=0,
    )
    assert s.bind_mode == "transceiver"
    assert s.enquire_link_seconds == 30.0
    assert (s.dlr_id_format, s.concat, s.source_ton) == (None, "udh", None)
    assert s.dlr_request is True
    assert (s.window, s.tps) == (1, 1)
    assert settings(None).concat == "udh"


def test_the_password_stays_out_of_the_redacted_view() -> None:
    s = settings({})
    assert "password" not in s.redacted()
    assert s.redacted()["system_id"] == "gw"


def test_claim_batch_follows_tps_and_window() -> None:
    assert settings({}, tps=200, window=10).claim_batch == 100
    assert settings({}, tps=10, window=10).claim_batch == 10
    assert settings({}, tps=100_000, window=50).claim_batch == 2000
