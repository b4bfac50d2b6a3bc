"""Reading a campaign's CSV file: separators, BOM, templates, and the refusals that stop a
campaign before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsgate.services.campaigns import CampaignError, CsvRow, read_csv


def write(tmp_path: Path, content: str, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8"))
    return path


def test_comma_separated_with_text_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'msisdn,text\n359881234567,"Hello, Ana"\n\n359887654321,Bye\n')
    file = read_csv(path)
    assert file.rows == [
        CsvRow(1, "359881234567", "Hello, Ana"),
        CsvRow(3, "359887654321", "Bye"),
    ]
    assert len(file.sha256) == 64


def test_semicolons_bom_and_template(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffMSISDN;Name;Amount\n359881234567;Ана;12.50\n")
    file = read_csv(path, template="{name}, дължите {amount} лв. {{ref}}")
    assert file.rows == [CsvRow(1, "359881234567", "Ана, дължите 12.50 лв. {ref}")]


def test_a_template_makes_another_campaign(tmp_path: Path) -> None:
    path = write(tmp_path, "msisdn,name,text\n359881234567,Ana,Hi\n")
    assert read_csv(path).sha256 != read_csv(path, template="Hi {name}").sha256
    assert read_csv(path).sha256 == read_csv(path).sha256


@pytest.mark.parametrize(
    ("content", "template", "message"),
    [
        ("", None, "empty"),
        ("phone,text\n1,a\n", None, "no 'msisdn' column"),
        ("msisdn,name\n1,a\n", None, "no 'text' column"),
        ("msisdn,name\n1,a\n", "Hi {surname}", "unknown placeholder {surname}"),
        ("msisdn,text\n1,a,b\n", None, "row 1: 3 fields"),
        ("msisdn,text\n", None, "no rows"),
    ],
)
def test_refused_files(tmp_path: Path, content: str, template: str | None, message: str) -> None:
    with pytest.raises(CampaignError, match=message.replace("{", r"\{").replace("}", r"\}")):
        read_csv(write(tmp_path, content), template=template)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("msisdn,text\n1,Здравей\n".encode("cp1251"))
    with pytest.raises(CampaignError, match="not UTF-8"):
        read_csv(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match=r"c\.csv"):
        read_csv(tmp_path / "c.csv")
