"""``python -m epix.cli`` runs the same command line as ``epix``."""

from epix.cli.main import cli

cli()
