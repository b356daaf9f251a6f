"""Code lists: unknown codes are errors, historic codes and implausible pairs are warnings."""

from __future__ import annotations

import pytest

from epix.errors import ERROR_TABLE, Severity
from epix.permits.codes import DATA_DIR, check_codes, code_lists, is_country
from tests.permits.helpers import base, change, change_line, codes, validate

VALID = base()


def test_valid_permit_has_no_code_findings() -> None:
    assert check_codes(VALID) == []


@pytest.mark.parametrize(
    ("changes", "line_changes", "code"),
    [
        ({"document_type": "Z"}, {}, "EPIX-CODE-001"),
        ({"purpose": "K"}, {}, "EPIX-CODE-002"),
        ({}, {"source": "K"}, "EPIX-CODE-003"),
        ({}, {"appendix": "IV"}, "EPIX-CODE-004"),
        ({}, {"unit": "ZZZ"}, "EPIX-CODE-005"),
        ({}, {"term": "QQQ"}, "EPIX-CODE-006"),
        ({}, {"origin_country": "QQ"}, "EPIX-CODE-007"),
    ],
)
def test_unknown_code_is_an_error(
    changes: dict[str, str], line_changes: dict[str, str], code: str
) -> None:
    permit = change_line(change(VALID, **changes), **line_changes)
    found = codes(permit)
    assert code in found
    assert ERROR_TABLE[code].severity is Severity.ERROR


def test_unknown_party_country_is_an_error_with_location() -> None:
    permit = change(
        VALID, importer=change(VALID.importer, address=change(VALID.importer.address, country="QZ"))
    )
    findings = [f for f in check_codes(permit) if f.code == "EPIX-CODE-007"]
    assert findings and findings[0].location and findings[0].location.endswith("CountryID")


def test_user_assigned_test_parties_and_real_countries_are_accepted() -> None:
    assert all(is_country(code) for code in ("XA", "XB", "XC", "XZ", "TH", "FR"))
    assert not any(is_country(code) for code in ("QQ", "AA", "xa", "THA"))


def test_historic_unit_and_term_are_warnings() -> None:
    permit = change_line(VALID, unit="PCS")
    assert "EPIX-CODE-101" in codes(permit)
    report_codes = codes(change_line(VALID, term="HEA"))
    assert "EPIX-CODE-101" in report_codes
    assert ERROR_TABLE["EPIX-CODE-101"].severity is Severity.WARNING


def test_implausible_term_unit_pair_is_a_warning() -> None:
    # Skins are counted or weighed, never measured in litres.
    assert "EPIX-CODE-102" in codes(change_line(VALID, term="SKI", unit="LTR"))
    assert "EPIX-CODE-102" not in codes(change_line(VALID, term="SKI", unit="KGM"))


def test_implausible_term_purpose_pair_is_a_warning() -> None:
    # Trophies for a zoo are not a combination the annual-report checks accept.
    permit = change_line(change(VALID, purpose="Z"), term="TRO", unit="NAR")
    assert "EPIX-CODE-103" in codes(permit)
    assert "EPIX-CODE-103" not in codes(change(VALID, purpose="T"))


def test_code_lists_are_loaded_from_data() -> None:
    lists = code_lists()
    assert len(lists.current["purpose"]) == 12
    assert len(lists.current["source"]) == 11
    assert {"E", "R", "I", "O"} <= lists.current["document_type"]
    assert "PCS" in lists.historic["unit"]
    assert "LPS" in lists.term_units and "T" in lists.term_purposes["LPS"]


def _sapi_codes(filename: str) -> list[str]:
    """The codes of a 2018 SAPI trade code list, read from the reference copy in the package."""
    text = (DATA_DIR / filename).read_text(encoding="utf-8")
    return [line.split(",", 1)[0] for line in text.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(
    ("field", "filename"), [("term", "term_codes_utf8.csv"), ("unit", "unit_codes_utf8.csv")]
)
def test_every_code_of_the_2018_sapi_lists_is_understood(field: str, filename: str) -> None:
    """Terms such as HAN (handbags) or WAL (wallets) and units such as KIL (kg) are in the code
    lists the CITES Trade Database used until 2021 (and in the term pairs EPIX ships) but not
    in the 2022 guide: a permit written with them is historic (a warning), not refused."""
    sapi = _sapi_codes(filename)
    assert {"term": {"HAN", "WAL", "BEL", "OTH"}, "unit": {"KIL", "SQM", "FEE"}}[field] <= set(sapi)
    unit = {"term": "NAR", "unit": "KGM"}[field]
    for code in sapi:
        report = validate(change_line(VALID, **{"unit": unit, field: code}))
        assert report.valid, (code, report.findings)
        assert not {f.code for f in report.findings} & {"EPIX-CODE-005", "EPIX-CODE-006"}


def test_a_renamed_unit_names_its_current_code() -> None:
    findings = check_codes(change_line(VALID, unit="KIL"))
    assert [(f.code, f.message) for f in findings] == [
        (
            "EPIX-CODE-101",
            "The unit of quantity 'KIL' is historic, no longer current; its current code is 'KGM'.",
        )
    ]
