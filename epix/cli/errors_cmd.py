"""``epix errors``: print the error table."""

from __future__ import annotations

import click

from epix.errors import ERROR_TABLE, render_markdown


@click.command()
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (docs/errors.md).")
def errors(markdown: bool) -> None:
    """List every error and warning code EPIX can report."""
    if markdown:
        click.echo(render_markdown(), nl=False)
        return
    for entry in ERROR_TABLE.values():
        click.echo(f"{entry.code:18} {entry.severity.value:8} {entry.http_status}  {entry.meaning}")
