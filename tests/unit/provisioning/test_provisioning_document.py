"""The provisioning document, one entry at a time: keys, defaults, and error messages."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from smsgate.domain.config_errors import ConfigError
from smsgate.domain.provisioning import (
    AccessCodeService,
    BulkService,
    ProvisioningDocument,
    parse_document,
    parse_toml,
)
from smsgate.domain.provisioning_checks import parse_config
from smsgate.domain.service_settings import (
    SETTINGS_MODELS,
    AccessCodeSettings,
    BulkSettings,
    SafeSettings,
)

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text())


def errors_of(data: Any, source: str = "shop.toml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_document(data, source=source)
    return caught.value.lines()


def with_entry(section: str, index: int, **changes: Any) -> dict[str, Any]:
    data = sample()
    entry = data[section][index]
    for key, value in changes.items():
        if value is ...:
            entry.pop(key)
        else:
            entry[key] = value
    return data


def test_design_sample_validates_as_is() -> None:
    document = parse_toml(SAMPLE.read_text(), source=str(SAMPLE))
    parse_config(sample())
    operator = document.operators[0]
    assert (operator.id, operator.kind, operator.port, operator.tps) == (
        "sim-bg",
        "smpp",
        2775,
        200,
    )
    short_number = document.short_numbers[0]
    assert (short_number.price_minor, short_number.currency) == (240, "BGN")
    assert (short_number.operator_share_bp, short_number.merchant_share_bp) == (0, 10000)
    merchant = document.merchants[0]
    assert (merchant.id, merchant.credit_minor, merchant.timezone) == (1, 5000, "UTC")
    access, bulk = document.services
    assert isinstance(access, AccessCodeService)
    assert isinstance(bulk, BulkService)
    assert access.settings_view() == AccessCodeSettings(
        code_kind="uses",
        validity_seconds=3600,
        uses=1,
        code_length=8,
        alphabet="alnum",
        reply_template="Your code: {code}",
        max_replies_per_mo=1,
    )
    assert bulk.callback_urls() == {"dlr": "https://shop.example/dlr"}
    assert bulk.stored_settings("BGN")["price_per_part_minor"] == 5
    assert bulk.stored_settings("BGN")["limit_month"] == 20000


def test_the_documented_example_validates() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "provisioning.md").read_text()
    example = docs.split("### A larger example")[1].split("```toml\n")[1].split("```")[0]
    document = parse_config(tomllib.loads(example), source="docs/provisioning.md")
    assert [s.id for s in document.services] == [102, 103]


def test_json_document_equals_toml_document() -> None:
    from_json = parse_document(json.loads(json.dumps(sample())))
    assert from_json == parse_toml(SAMPLE.read_text())


def test_every_section_is_optional() -> None:
    assert parse_config({}) == ProvisioningDocument()
    assert parse_config({"operators": []}).operators == []


def test_operator_defaults_and_link_settings() -> None:
    data = {
        "operators": [
            {"id": "push", "country": "BG", "kind": "http", "ip_allowlist": ["10.0.0.0/8"]}
        ]
    }
    operator = parse_document(data).operators[0]
    assert operator.tps == 100
    assert operator.window == 10
    assert operator.link_settings() == {
        "system_type": "",
        "bind_mode": "transceiver",
        "enquire_link_seconds": 30,
        "reconnect_max_seconds": 60,
        "source_ton": None,
        "source_npi": None,
        "dlr_request": True,
        "dlr_id_format": None,
        "concat": "udh",
    }


def test_stored_settings_read_back() -> None:
    bulk = parse_document(sample()).services[1]
    stored = bulk.stored_settings("BGN")
    assert BulkSettings.from_stored(stored) == bulk.settings_view()
    for model in SETTINGS_MODELS.values():
        assert set(model.amount_keys) <= set(model.model_fields)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            with_entry("services", 1, limit_day=0),
            "shop.toml: services[1] (id=201): limit_day: "
            "Input should be greater than or equal to 1",
        ),
        (
            with_entry("services", 1, code_kind="uses"),
            "shop.toml: services[1] (id=201): code_kind: unknown key for a service of type bulk",
        ),
        (
            with_entry("services", 0, colour="red"),
            "shop.toml: services[0] (id=102): colour: "
            "unknown key for a service of type access_code",
        ),
        (
            with_entry("services", 0, type="fax"),
            "shop.toml: services[0] (id=102): type: unknown service type; expected one of: "
            "access_code, bulk, subscription, safe, transit, verification",
        ),
        (
            with_entry("services", 0, type=...),
            "shop.toml: services[0] (id=102): type: required key is missing (one of: "
            "access_code, bulk, subscription, safe, transit, verification)",
        ),
        (
            with_entry("short_numbers", 0, price=2.4),
            "shop.toml: short_numbers[0] (number=1851): price: an amount is a decimal string "
            'in quotes, such as "2.40"',
        ),
        (
            with_entry("short_numbers", 0, price="2.405"),
            "shop.toml: short_numbers[0] (number=1851): price: '2.405' has 3 decimals; BGN has 2",
        ),
        (
            with_entry("merchants", 0, credit="-5"),
            "shop.toml: merchants[0] (id=1): credit: '-5' is not an amount such as \"2.40\"",
        ),
        (
            with_entry("merchants", 0, currency="XXX"),
            "shop.toml: merchants[0] (id=1): currency: unknown currency 'XXX': use an ISO 4217 "
            "code such as BGN, EUR",
        ),
        (
            with_entry("merchants", 0, password=...),
            "shop.toml: merchants[0] (id=1): password: required key is missing",
        ),
        (
            with_entry("merchants", 0, id="1"),
            "shop.toml: merchants[0] (id=1): id: Input should be a valid integer",
        ),
        (
            with_entry("operators", 0, host=...),
            "shop.toml: operators[0] (id=sim-bg): host: required for an smpp operator",
        ),
        (
            with_entry("operators", 0, password="123456789"),
            "shop.toml: operators[0] (id=sim-bg): password: "
            "String should have at most 8 characters",
        ),
        (
            with_entry("operators", 0, kind="http", host=..., port=...),
            "shop.toml: operators[0] (id=sim-bg): intake_secret: an http operator needs "
            "intake_secret or ip_allowlist",
        ),
        (
            with_entry("services", 0, short_numbers=["18 51"]),
            "shop.toml: services[0] (id=102): short_numbers[0]: '18 51' is not a short number "
            '("1851", or "1851@operator" for one operator)',
        ),
        (
            with_entry("services", 0, ip_allowlist=["10.0.0.300"]),
            "shop.toml: services[0] (id=102): ip_allowlist[0]: '10.0.0.300' is not an IP "
            "address or network (CIDR)",
        ),
        (
            with_entry("services", 0, short_numbers=[]),
            "shop.toml: services[0] (id=102): short_numbers: a access_code service needs at "
            "least one",
        ),
        (
            with_entry("services", 0, reply_template="Thanks!"),
            "shop.toml: services[0] (id=102): reply_template: must contain {code}",
        ),
        (
            with_entry("services", 0, code_kind="period_from_issue", validity_seconds=0),
            "shop.toml: services[0] (id=102): validity_seconds: must be > 0 for code_kind "
            "period_from_issue",
        ),
        (
            with_entry("services", 0, keyword="TWO WORDS"),
            "shop.toml: services[0] (id=102): keyword: keyword 'TWO WORDS' has more than one word",
        ),
        (
            with_entry("services", 1, sender="TOO-LONG-SENDER"),
            "shop.toml: services[1] (id=201): sender: a sender is up to 11 letters/digits "
            "(alphanumeric) or up to 15 digits (a number)",
        ),
        (
            with_entry("services", 1, dlr_url="ftp://shop.example/dlr"),
            "shop.toml: services[1] (id=201): dlr_url: 'ftp://shop.example/dlr' is not an "
            "http:// or https:// URL",
        ),
        (
            with_entry("services", 1, signing_secret="short"),
            "shop.toml: services[1] (id=201): signing_secret: a signing secret has at least 16 "
            "characters and no spaces",
        ),
        (
            with_entry("merchants", 0, timezone="Mars/Olympus"),
            "shop.toml: merchants[0] (id=1): timezone: 'Mars/Olympus' is not an IANA time zone "
            "such as Europe/Sofia",
        ),
    ],
)
def test_error_names_file_entry_and_key(data: dict[str, Any], line: str) -> None:
    assert line in errors_of(data)


def test_every_problem_is_reported_at_once() -> None:
    data = sample()
    data["services"][0]["code_length"] = 3
    data["services"][1]["limit_week"] = -1
    data["merchants"][0]["status"] = "gone"
    lines = errors_of(data)
    assert len(lines) == 3
    assert {line.split(": ")[1] for line in lines} == {
        "services[0] (id=102)",
        "services[1] (id=201)",
        "merchants[0] (id=1)",
    }


def test_document_level_errors() -> None:
    assert errors_of({"merchant": []}) == [
        "shop.toml: (document): merchant: unknown section; expected one of: operators, "
        "short_numbers, merchants, services, routes"
    ]
    assert errors_of({"merchants": {"id": 1}}) == [
        "shop.toml: (document): merchants: Input should be a valid list (a section is a list "
        "of [[merchants]] tables)"
    ]
    assert errors_of([1, 2]) == ["shop.toml: (document): (document): expected a table/object"]
    assert errors_of({"services": [5], "merchants": ["shop"]}) == [
        "shop.toml: merchants[0]: (entry): an entry is a [[merchants]] table (an object in JSON)",
        "shop.toml: services[0]: (entry): an entry is a [[services]] table (an object in JSON)",
    ]


def test_toml_syntax_error_names_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml("[[merchants]]\nid = = 1\n", source="broken.toml")
    (line,) = caught.value.lines()
    assert line.startswith("broken.toml: (document): (syntax): ")
    assert "line 2" in line


def test_no_secret_is_echoed_in_errors() -> None:
    data = sample()
    data["merchants"][0]["password"] = "sh0rt"
    data["operators"][0]["password"] = "a-much-too-long-password"
    text = "\n".join(errors_of(data))
    assert "sh0rt" not in text
    assert "a-much-too-long-password" not in text


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # 24 bytes, Standard Webhooks
        "a-hand-written-passkey-123",  # a kit's passkey, used as its bytes
    ],
)
def test_signing_secret_formats_accepted(secret: str) -> None:
    data = with_entry("services", 0, signing_secret=secret)
    assert parse_document(data).services[0].signing_secret == secret


@pytest.mark.parametrize("secret", ["whsec_!!!", "whsec_c2hvcnQ=", "with a space in it ok?"])
def test_signing_secret_formats_refused(secret: str) -> None:
    assert any(
        "signing_secret" in line
        for line in errors_of(with_entry("services", 0, signing_secret=secret))
    )


def test_service_types_and_their_keys() -> None:
    base = {"merchant": 1, "short_numbers": ["1851"]}
    data = {
        "services": [
            {"id": 1, "type": "subscription", "keyword": "SUB", **base, "rebill_price": "1.20"},
            {
                "id": 2,
                "type": "safe",
                "keyword": "SAFE",
                **base,
                "messages": 3,
                "last_delay_seconds": 86400,
            },
            {
                "id": 3,
                "type": "transit",
                "keyword": "TR",
                **base,
                "result_url": "https://m.example/r",
            },
            {"id": 4, "type": "verification", "merchant": 1, "call_numbers": ["+35924001122"]},
        ]
    }
    services = parse_document(data).services
    assert [s.type for s in services] == ["subscription", "safe", "transit", "verification"]
    assert services[0].stored_settings("BGN")["rebill_price_minor"] == 120
    assert isinstance(services[1].settings_view(), SafeSettings)
    assert services[2].callback_urls() == {"result": "https://m.example/r"}
    assert services[3].stored_settings("BGN") == {
        "call_numbers": ["+35924001122"],
        "wait_seconds": 900,
    }
    # A safe needs its number of messages; a verification its numbers to call.
    lines = errors_of(
        {
            "services": [
                {"id": 2, "type": "safe", **base},
                {"id": 4, "type": "verification", "merchant": 1, "call_numbers": []},
            ]
        }
    )
    assert "shop.toml: services[0] (id=2): messages: required key is missing" in lines
    assert any(line.startswith("shop.toml: services[1] (id=4): call_numbers: ") for line in lines)


def test_callback_method_and_status_values() -> None:
    lines = errors_of(with_entry("services", 0, callback_method="PUT", status="paused"))
    assert (
        "shop.toml: services[0] (id=102): callback_method: Input should be 'GET' or 'POST'" in lines
    )
    assert (
        "shop.toml: services[0] (id=102): status: Input should be 'active' or 'disabled'" in lines
    )
