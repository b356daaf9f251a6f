"""Each ledger check refuses with its own code, and the matching good case passes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from epix.auth.principal import Principal
from epix.db import Database, utcnow
from epix.endorsements import service
from epix.endorsements.checks import parse_quantity
from epix.endorsements.document import Side
from epix.endorsements.ledger import remaining_quantities
from epix.endorsements.service import BorderDetails, LineInput, SignedEndorsement, Signer
from epix.errors import EpixError
from epix.exchange.models import Permit
from tests.endorsements.conftest import MakePermit, StoredPermit, border, customs, lines


def endorse(
    db: Database,
    permit: StoredPermit,
    signer: Signer,
    *,
    side: Side = Side.IMPORT,
    actor: Principal | None = None,
    items: list[LineInput] | None = None,
    details: BorderDetails | None = None,
) -> SignedEndorsement:
    actor = actor or customs("XB" if side is Side.IMPORT else "XA")
    with db.unit_of_work() as session:
        return service.endorse(
            session,
            issuing_party=permit.issuing_party,
            number=permit.number,
            side=side,
            details=details or border("XBABC" if side is Side.IMPORT else "XAABC"),
            lines=items if items is not None else lines(("1", "10", "PCS")),
            declaration_reference=None,
            signer=signer,
            signed_by="authority",
            actor=actor,
        )


def refused(code: str, call: object) -> EpixError:
    assert callable(call)
    with pytest.raises(EpixError) as caught:
        call()
    codes = [finding.code for finding in caught.value.findings]
    assert code in codes, codes
    assert all(finding.location for finding in caught.value.findings)
    return caught.value


def permit_status(db: Database, permit: StoredPermit) -> str:
    with db.unit_of_work() as session:
        row = session.get(Permit, permit.id)
        assert row is not None
        return row.status


def test_quantity_up_to_permitted_passes_and_more_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    error = refused(
        "EPIX-QTY-001",
        lambda: endorse(db, permit, signer, items=lines(("1", "10.5", "PCS"))),
    )
    assert error.findings[0].location == "lines/0/quantity"
    result = endorse(db, permit, signer, items=lines(("1", "10", "PCS"), ("2", "2.5", "KGM")))
    assert {line.quantity for line in result.endorsement.lines} == {Decimal(10), Decimal("2.5")}


def test_unit_must_match_the_line_case_insensitively(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    refused("EPIX-QTY-002", lambda: endorse(db, permit, signer, items=lines(("1", "5", "KGM"))))
    result = endorse(db, permit, signer, items=lines(("1", "5", "pcs")))
    assert result.endorsement.lines[0].unit == "PCS"


def test_line_without_unit_counts_specimens(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit(lines=(("A", "3", None),))
    refused("EPIX-QTY-002", lambda: endorse(db, permit, signer, items=lines(("A", "3", "KGM"))))
    endorse(db, permit, signer, items=lines(("A", "3", "NAR")))


def test_unknown_line_is_refused(db: Database, make_permit: MakePermit, signer: Signer) -> None:
    permit = make_permit()
    error = refused(
        "EPIX-QTY-003", lambda: endorse(db, permit, signer, items=lines(("9", "1", "PCS")))
    )
    assert "1, 2" in error.findings[0].message
    endorse(db, permit, signer, items=lines(("2", "1", "KGM")))


def test_unknown_lines_name_a_bounded_list_of_the_permits_lines(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    """Every unknown line gets a message naming the permit's lines: named in full, those
    messages grew with (unknown lines) x (permit lines), 150 MB for 10,000 x 1,000."""
    permit = make_permit(lines=tuple((f"{i:04d}", "10", "PCS") for i in range(500)))
    unknown = lines(*[(f"x{i}", "1", "PCS") for i in range(50)])
    error = refused("EPIX-QTY-003", lambda: endorse(db, permit, signer, items=unknown))
    assert len(error.findings) == 50
    first = error.findings[0].message
    assert "0000, 0001" in first and "and 480 more" in first
    assert "0020" not in first
    assert all(len(finding.message) < 300 for finding in error.findings)


def test_line_given_twice_is_refused(db: Database, make_permit: MakePermit, signer: Signer) -> None:
    permit = make_permit()
    twice = lines(("1", "4", "PCS"), ("1", "4", "PCS"))
    refused("EPIX-QTY-007", lambda: endorse(db, permit, signer, items=twice))


@pytest.mark.parametrize(
    "quantity",
    [
        "-1",
        -3,
        0,
        "0",
        "abc",
        "",
        "NaN",
        "Infinity",
        True,
        "1.0000001",
        "1e15",
        "12345678901.000001",
        None,
        # Beyond the default decimal context: once an Overflow (a 500), a quantity clamped
        # to 0, and a 29th significant digit rounded away.
        "1E+1000000",
        "1E-999999999",
        "1.0000000000000000000000000000001",
    ],
)
def test_bad_quantities_are_refused(
    db: Database, make_permit: MakePermit, signer: Signer, quantity: object
) -> None:
    permit = make_permit()
    refused(
        "EPIX-QTY-004", lambda: endorse(db, permit, signer, items=lines(("1", quantity, "PCS")))
    )


@pytest.mark.parametrize(
    "quantity", ["1,5", "1,250.5", "1.250,5", "1 250", "1_000", "\u0661\u0662", "\uff17"]
)
def test_a_comma_or_grouping_is_refused_saying_how_to_write_the_quantity(quantity: str) -> None:
    """Never read in one locale's way: '1,5' is not taken for 15 nor for 1.5; nor Python's
    extras: digit grouping with '_', Arabic-Indic or full-width digits."""
    with pytest.raises(EpixError) as refusal:
        parse_quantity(quantity)
    finding = refusal.value.findings[0]
    assert finding.code == "EPIX-QTY-004"
    assert "a point before decimals" in finding.message
    assert "no thousands separators" in finding.message


@pytest.mark.parametrize(
    "quantity", ["7", 7, 7.0, " 7.000 ", Decimal("7"), "7.00000000000000", "0.07E+2", "700E-2"]
)
def test_numeric_quantities_in_any_spelling_pass(
    db: Database, make_permit: MakePermit, signer: Signer, quantity: object
) -> None:
    permit = make_permit()
    result = endorse(db, permit, signer, items=lines(("1", quantity, "PCS")))
    assert result.endorsement.lines[0].quantity == 7


@pytest.mark.parametrize("port", ["Rotterdam", "NLRT", "ZZRTM", "NL1TM", "NL-RTM", 12345, ""])
def test_port_that_is_not_a_unlocode_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer, port: object
) -> None:
    permit = make_permit()
    error = refused("EPIX-QTY-006", lambda: endorse(db, permit, signer, details=border(port=port)))
    assert error.findings[0].location == "port"


@pytest.mark.parametrize(("port", "stored"), [("NLRTM", "NLRTM"), ("nl rtm", "NLRTM")])
def test_unlocode_port_is_stored_in_five_character_form(
    db: Database, make_permit: MakePermit, signer: Signer, port: str, stored: str
) -> None:
    permit = make_permit()
    result = endorse(db, permit, signer, details=border(port=port))
    assert result.endorsement.port == stored


def test_endorsement_dated_in_the_future_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    later = utcnow().date() + timedelta(days=3)
    refused("EPIX-QTY-009", lambda: endorse(db, permit, signer, details=border(on=later)))


def test_expired_permit_is_refused(db: Database, make_permit: MakePermit, signer: Signer) -> None:
    now = utcnow()
    expired = make_permit(valid_from=now - timedelta(days=200), valid_until=now - timedelta(days=1))
    refused("EPIX-STATE-001", lambda: endorse(db, expired, signer))
    endorse(db, make_permit(valid_until=now + timedelta(hours=1)), signer)


def test_permit_not_yet_valid_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    now = utcnow()
    future = make_permit(valid_from=now + timedelta(days=2), valid_until=now + timedelta(days=60))
    refused("EPIX-STATE-002", lambda: endorse(db, future, signer))


def test_cancelled_permit_is_refused(db: Database, make_permit: MakePermit, signer: Signer) -> None:
    refused("EPIX-STATE-003", lambda: endorse(db, make_permit(status="cancelled"), signer))


def test_replaced_permit_is_refused(db: Database, make_permit: MakePermit, signer: Signer) -> None:
    refused("EPIX-STATE-004", lambda: endorse(db, make_permit(status="replaced"), signer))


def test_second_endorsement_of_the_same_side_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    first = endorse(db, permit, signer, side=Side.EXPORT, items=lines(("1", "4", "PCS")))
    assert permit_status(db, permit) == "endorsed"
    error = refused(
        "EPIX-STATE-005",
        lambda: endorse(db, permit, signer, side=Side.EXPORT, items=lines(("1", "4", "PCS"))),
    )
    assert first.endorsement.endorsement_id in error.findings[0].message


def test_import_inspection_after_export_marks_the_permit_used(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    endorse(db, permit, signer, side=Side.EXPORT, items=lines(("1", "8", "PCS")))
    # The importer may record at most what was exported, not the permitted 10.
    refused(
        "EPIX-QTY-001",
        lambda: endorse(db, permit, signer, side=Side.IMPORT, items=lines(("1", "9", "PCS"))),
    )
    endorse(db, permit, signer, side=Side.IMPORT, items=lines(("1", "8", "PCS")))
    assert permit_status(db, permit) == "used"
    refused("EPIX-STATE-005", lambda: endorse(db, permit, signer, side=Side.IMPORT))
    refused("EPIX-STATE-005", lambda: endorse(db, permit, signer, side=Side.EXPORT))


def test_only_the_exporting_and_importing_parties_customs_may_endorse(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()  # XA exports to XB
    refused("EPIX-STATE-006", lambda: endorse(db, permit, signer, actor=customs("XC")))
    refused(
        "EPIX-STATE-006",
        lambda: endorse(db, permit, signer, side=Side.EXPORT, actor=customs("XB")),
    )
    refused(
        "EPIX-STATE-006",
        lambda: endorse(db, permit, signer, side=Side.IMPORT, actor=customs("XA")),
    )
    endorse(db, permit, signer, side=Side.EXPORT, actor=customs("XA"))


def test_import_permit_is_inspected_by_its_issuer(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    # An import permit (type I) is issued by the importing Party XB and sent to exporter XA.
    permit = make_permit(issuing_party="XB", recipient_party="XA", document_type="I")
    refused(
        "EPIX-STATE-006",
        lambda: endorse(db, permit, signer, side=Side.IMPORT, actor=customs("XA")),
    )
    endorse(db, permit, signer, side=Side.IMPORT, actor=customs("XB"))


def test_unknown_permit_is_refused(db: Database, signer: Signer) -> None:
    ghost = StoredPermit(0, "XA", "NO-SUCH", "0" * 64)
    refused("EPIX-STATE-007", lambda: endorse(db, ghost, signer))


def test_remaining_quantities_follow_the_consignment(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()

    def remaining() -> dict[str, Decimal]:
        with db.unit_of_work() as session:
            row = session.get(Permit, permit.id)
            assert row is not None
            return remaining_quantities(session, row)

    assert remaining() == {"1": Decimal(10), "2": Decimal("2.5")}
    endorse(db, permit, signer, side=Side.EXPORT, items=lines(("1", "6", "PCS")))
    # Exported 6 of line 1 and nothing of line 2: that is all the importer may still record.
    assert remaining() == {"1": Decimal(6), "2": Decimal(0)}
    endorse(db, permit, signer, side=Side.IMPORT, items=lines(("1", "6", "PCS")))
    assert remaining() == {"1": Decimal(0), "2": Decimal(0)}


def test_remaining_is_zero_on_a_cancelled_permit(db: Database, make_permit: MakePermit) -> None:
    permit = make_permit(status="cancelled")
    with db.unit_of_work() as session:
        row = session.scalar(select(Permit).where(Permit.id == permit.id))
        assert row is not None
        assert set(remaining_quantities(session, row).values()) == {Decimal(0)}


def test_endorsement_dated_before_the_permit_is_valid_is_refused(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    now = utcnow()
    permit = make_permit(valid_from=now - timedelta(days=10), valid_until=now + timedelta(days=60))
    before = (now - timedelta(days=12)).date()
    error = refused("EPIX-QTY-010", lambda: endorse(db, permit, signer, details=border(on=before)))
    assert error.findings[0].location == "date"
    on_the_first_day = (now - timedelta(days=10)).date()
    endorse(db, permit, signer, details=border(on=on_the_first_day))
