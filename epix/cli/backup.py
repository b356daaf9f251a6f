"""``epix backup DEST``: a consistent copy of a running node, as a data directory of its own.

The embedded SQLite database is copied with SQLite's online backup API: one read transaction,
so the copy is the database as of one commit while the node goes on writing (WAL mode lets
writers continue beside the reader). Copying the files instead would tear a database whose WAL
is being checkpointed. Everything else in the data directory (the node key, the session secret
that also seals webhook secrets, demo keys) is copied beside it, since a restored node that
lacks them signs with a new key and cannot open its stored webhook secrets. The backup holds
secrets: directories are 0700, files 0600.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from epix.db.engine import SQLITE_BUSY_TIMEOUT_MS, is_set_up
from epix.settings import get_settings

DATABASE_FILE = "epix.sqlite3"
# The live database and SQLite's companions: copied through the backup API, never as files.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-writelock")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    path.chmod(0o700)


def _copy_secrets(source: Path, destination: Path, skip: set[Path]) -> int:
    """Copy the data directory's files (but not the live database) with owner-only modes."""
    copied = 0
    for entry in sorted(source.iterdir()):
        if entry.resolve() in skip or entry.is_symlink():
            continue
        target = destination / entry.name
        if entry.is_dir():
            _private_dir(target)
            copied += _copy_secrets(entry, target, skip)
        elif entry.is_file():
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out, entry.open("rb") as data:
                shutil.copyfileobj(data, out)
            copied += 1
    return copied


def _backup_sqlite(database_path: Path, target: Path) -> None:
    """Copy the live database into ``target`` (0600) in one read transaction, then check it."""
    partial = target.with_name(target.name + ".partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        source = sqlite3.connect(database_path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)  # all pages in one step: one snapshot of the database
                (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
        if verdict != "ok":
            raise click.ClickException(f"The copied database failed its integrity check: {verdict}")
    except sqlite3.Error as exc:  # e.g. the destination's disk is full
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"The backup could not be written to {target}: {exc}") from None
    except BaseException:  # an interrupt: leave no copy that looks usable
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)


@click.command()
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
def backup(destination: Path) -> None:
    """Back up this node into DESTINATION, a new directory, while it runs.

    The copy is a data directory: the SQLite database as of one moment (online backup API) and
    the node key, session secret and other files of EPIX_DATA_DIR. Restore by stopping the
    node and pointing EPIX_DATA_DIR at the copy (or moving it into place). On PostgreSQL only
    the data directory's files are copied: dump the database with pg_dump at the same time.
    """
    settings = get_settings()
    url = settings.effective_database_url
    if not is_set_up(url):
        shown = make_url(url).render_as_string(hide_password=True)
        raise click.ClickException(
            f"There is no EPIX database at {shown}; point EPIX_DATA_DIR or EPIX_DATABASE_URL "
            "at the node's."
        )
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise click.ClickException(f"{destination} exists and is not an empty directory.")
    parsed = make_url(url)
    database_path = (
        Path(parsed.database or "").resolve() if parsed.drivername.startswith("sqlite") else None
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    _private_dir(destination)
    skip = {destination.resolve()}
    if database_path is not None:
        skip |= {Path(f"{database_path}{suffix}") for suffix in _SQLITE_SUFFIXES}
        _backup_sqlite(database_path, destination / DATABASE_FILE)
    copied = (
        _copy_secrets(settings.data_dir, destination, skip) if settings.data_dir.is_dir() else 0
    )
    click.echo(f"backed up {settings.data_dir} ({copied} files) to {destination}")
    if database_path is None:
        click.echo(
            "The database is not in the copy: dump it with pg_dump (pg_dump -Fc -f epix.dump "
            "DBNAME) and keep the dump with this directory."
        )
    else:
        click.echo(
            f"Restore: stop the node, then run it with EPIX_DATA_DIR={destination} "
            "(and EPIX_DATABASE_URL unset)."
        )
