"""A missing or malformed quota or reservation table is a clear message at start, never a row
silently dropped nor a 500 on every submission."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from epix.api.app import create_app
from epix.cli.main import cli
from epix.compliance import quotas as quota_table
from epix.compliance.quotas import load_quotas
from epix.db import Database
from epix.permits import reservations as reservation_table
from epix.permits.reservations import load_reservations
from epix.permits.sapi_dates import ReferenceDataError
from epix.permits.writer import write_permit
from epix.settings import Settings
from tests.permits.helpers import base

QUOTAS = quota_table.DATA.read_text(encoding="utf-8")
RESERVATIONS = reservation_table.DATA.read_text(encoding="utf-8")
# Namibia's leopard quota, a single-line row of the real table (line 6 of quotas.csv).
LEOPARDS = "CoP_approved,10/06/1997,Present,Panthera pardus,8619,SPECIES,NA,250,"
NORWAY_MINKE = "01/01/1986,,Balaenoptera acutorostrata,8288,SPECIES,NO,"


def _with(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_packaged_tables_load_whole() -> None:
    assert len(load_quotas(quota_table.DATA)) == 72
    assert len(load_reservations(reservation_table.DATA)) == 386  # 388 less Japan's 2 withdrawn
    # Every row carries its Species+ id, which screening matches first.
    assert all(quota.concept_id for quota in load_quotas(quota_table.DATA))
    assert all(entry.concept_id for entry in load_reservations(reservation_table.DATA))


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (LEOPARDS.replace(",250,", ",250 (provisional),"), "quota '250 (provisional)'"),
        (LEOPARDS.replace(",250,", ",,"), "quota ''"),
        (LEOPARDS.replace(",250,", ",-5,"), "quota '-5'"),
        (LEOPARDS.replace("10/06/1997", "1997-06-10"), "'1997-06-10'"),
        (LEOPARDS.replace(",Present,", ",31/02/2020,"), "'31/02/2020'"),
        (LEOPARDS.replace("Panthera pardus", " "), "no taxon name"),
        (LEOPARDS.replace(",SPECIES,", ",SPECIE,"), "rank 'SPECIE'"),
        (LEOPARDS.replace(",NA,", ",Namibia,"), "Party 'Namibia'"),
        (LEOPARDS.replace(",8619,", ",8619a,"), "taxon_concept_id '8619a'"),
    ],
)
def test_a_malformed_quota_row_is_named_by_line(tmp_path: Path, broken: str, says: str) -> None:
    assert LEOPARDS in QUOTAS
    path = _with(tmp_path, "quotas.csv", QUOTAS.replace(LEOPARDS, broken))
    with pytest.raises(ReferenceDataError) as raised:
        load_quotas(path)
    assert f"{path} line 6:" in str(raised.value)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (NORWAY_MINKE.replace("01/01/1986", "1986"), "'1986'"),
        (NORWAY_MINKE.replace(",Balaenoptera acutorostrata,", ",,"), "no taxon name"),
        (NORWAY_MINKE.replace(",8288,", ",-8288,"), "taxon_concept_id '-8288'"),
    ],
)
def test_a_malformed_reservation_row_is_named(tmp_path: Path, broken: str, says: str) -> None:
    assert RESERVATIONS.count(NORWAY_MINKE) == 1
    path = _with(tmp_path, "reservations.csv", RESERVATIONS.replace(NORWAY_MINKE, broken))
    with pytest.raises(ReferenceDataError, match=says):
        load_reservations(path)


def test_a_missing_table_or_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="cannot be read"):
        load_quotas(tmp_path / "absent.csv")
    no_quota = _with(tmp_path, "quotas.csv", QUOTAS.replace(",quota,", ",amount,", 1))
    with pytest.raises(ReferenceDataError, match="no column quota"):
        load_quotas(no_quota)
    no_party = _with(tmp_path, "reservations.csv", RESERVATIONS.replace("iso_code2", "iso", 1))
    with pytest.raises(ReferenceDataError, match="no column iso_code2"):
        load_reservations(no_party)


@pytest.fixture
def broken_quotas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The packaged quota table replaced by one with a malformed row, for this test only."""
    path = _with(tmp_path, "quotas.csv", QUOTAS.replace(",250,", ",two hundred and fifty,"))
    monkeypatch.setattr(quota_table, "DATA", path)
    quota_table.quotas.cache_clear()
    quota_table.quota_index.cache_clear()
    yield path
    quota_table.quotas.cache_clear()
    quota_table.quota_index.cache_clear()


def test_a_node_does_not_start_on_a_malformed_table(broken_quotas: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    database = Database(f"sqlite:///{tmp_path / 'epix.db'}")
    try:
        with pytest.raises(ReferenceDataError, match="'two hundred and fifty'"):
            create_app(settings, database)
    finally:
        database.dispose()


def test_epix_validate_says_which_table_is_broken(broken_quotas: Path, tmp_path: Path) -> None:
    permit = tmp_path / "permit.xml"
    permit.write_bytes(write_permit(base()))
    result = CliRunner().invoke(cli, ["validate", str(permit)])
    assert result.exit_code == 1
    assert f"Error: {broken_quotas} line 6: quota 'two hundred and fifty'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
