"""``epix bench``: rates and latencies, each as a ratio to a baseline from the same run."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks: each prints its rate and the ratio to a baseline from the same run."""
