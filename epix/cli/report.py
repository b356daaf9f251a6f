"""``epix report``: the annual-report trade data of a Party (Art. VIII.7), from this node."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from epix.cli.users import cli_context, cli_database
from epix.compliance import load_reference_data
from epix.reports.annual import read_annual_report


@click.group()
def report() -> None:
    """Reports for the Secretariat and the Management Authorities."""


def _party_code(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """PARTY as ``GET /v1/reports/annual/{party}`` takes it: 2 to 8 letters, any case."""
    if not re.fullmatch(r"[A-Za-z]{2,8}", value):
        raise click.BadParameter(f"{value!r} is not a Party code (2 to 8 letters: KE, CITES).")
    return value


@report.command("annual")
@click.argument("party", callback=_party_code)
@click.argument("year", type=int)
@click.option(
    "--format",
    "output",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="json: permit counts and trade records; csv: the trade records, one row each.",
)
@click.option(
    "--output",
    "target",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def annual(party: str, year: int, output: str, target: Path | None) -> None:
    """PARTY's annual-report trade data for YEAR: the permits it granted, one record per
    permit line it exported, re-exported or imported (saying whether the quantity was endorsed
    at the border or is what the permit allowed; an Appendix I shipment whose import permit was
    endorsed beside its export document is imported once, on that document), and its use of
    each published export quota summed across permits. Only permits exchanged through this
    node are covered. Audited."""
    load_reference_data()  # quota use reads the quota table and the Species+ taxonomy
    with cli_database() as database:
        found = read_annual_report(
            database, party, year, reader=None, request=cli_context("report annual"), output=output
        )
    text = found.to_csv() if output == "csv" else json.dumps(found.as_dict(), indent=2) + "\n"
    if target is None:
        click.echo(text, nl=False)
    else:
        try:
            target.write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            raise click.ClickException(f"{target} cannot be written: {exc.strerror}.") from None
        click.echo(f"{len(found.records)} records written to {target}", err=True)
