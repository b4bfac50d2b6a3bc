"""Reading the provisioning file: operators and short numbers only."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsgate.domain.config_errors import ConfigError
from smsgate.simulator.config import SimulatorOptions, config_from_mapping, load_config

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"


def operator(**fields: object) -> dict[str, object]:
    return {
        "id": "op",
        "country": "BG",
        "kind": "smpp",
        "host": "h",
        "port": 1,
        "system_id": "sys",
        "password": "pw",
        **fields,
    }


def test_the_design_sample_loads_and_its_other_sections_are_ignored() -> None:
    config = load_config(SAMPLE, SimulatorOptions(inbox_limit=5))
    [op] = config.operators
    assert (op.id, op.system_id, op.password, op.dlr_id_format) == (
        "sim-bg",
        "smsgate",
        "secret",
        None,
    )
    [number] = config.short_numbers
    assert (number.number, number.price, number.price_minor, number.currency) == (
        "1851",
        "2.40",
        240,
        "BGN",
    )
    assert config.options.inbox_limit == 5
    assert config.short_number("1851", "sim-bg") is number
    assert config.short_number("1851", "other") is None


def test_every_problem_is_reported() -> None:
    data = {
        "operators": [operator(dlr_id_format="octal")],
        "short_numbers": [{"number": "18x", "operator": "op", "price": 2.4, "currency": "BGN"}],
        "services": "whatever: not read",
    }
    with pytest.raises(ConfigError) as error:
        config_from_mapping(data, source="f.toml")
    text = str(error.value)
    assert "dlr_id_format" in text and "number" in text and "price" in text
    assert "services" not in text


def test_a_short_number_of_an_unknown_operator_is_an_error() -> None:
    data = {
        "operators": [operator()],
        "short_numbers": [{"number": "1", "operator": "ghost", "price": "1", "currency": "BGN"}],
    }
    with pytest.raises(ConfigError, match="no operator with id 'ghost'"):
        config_from_mapping(data)


def test_shared_credentials_are_told_apart_by_system_type() -> None:
    data = {
        "operators": [
            operator(id="a"),
            operator(id="b", system_type="B"),
            operator(id="c", kind="http", intake_secret="s" * 16),
        ]
    }
    config = config_from_mapping(data)
    assert [op.id for op in config.operators] == ["a", "b"]  # http operators have no SMSC
    assert config.authenticate("sys", "pw", "").id == "a"  # type: ignore[union-attr]
    assert config.authenticate("sys", "pw", "B").id == "b"  # type: ignore[union-attr]
    assert config.authenticate("sys", "pw", "other").id == "a"  # type: ignore[union-attr]
    assert config.authenticate("sys", "nope", "") is None


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.toml")


def test_toml_syntax_errors_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[operators]\n")
    with pytest.raises(ConfigError, match="syntax"):
        load_config(path)


def test_the_window_of_deliveries_is_at_least_one() -> None:
    assert SimulatorOptions().window == 1000
    assert SimulatorOptions(window=1).window == 1
    with pytest.raises(ValueError, match="window"):
        SimulatorOptions(window=0)
