"""``without_credentials``: the settings' credentials are taken out of what the log writes of a
traceback or a warning, where they stand as credentials, without mangling the rest (a short
database password taken out as a substring made every path of a traceback unreadable)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from epix.cli.logs import without_credentials
from epix.settings import get_settings


@pytest.fixture
def database_password(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    password: str = request.param
    monkeypatch.setenv("EPIX_DATABASE_URL", f"postgresql+psycopg://epix:{password}@db.example/epix")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


SHORT = ["epix"]


@pytest.mark.parametrize("database_password", SHORT, indirect=True)
@pytest.mark.usefixtures("database_password")
@pytest.mark.parametrize(
    "text",
    [
        '  File "/work/epix/epix/cli/serve.py", line 151, in web_app',
        "epix serve: the web worker process of epix cannot start",
        "ModuleNotFoundError: No module named 'epix.api.epixx'",
    ],
)
def test_a_short_password_said_as_no_credential_is_left_alone(text: str) -> None:
    assert without_credentials(text) == text


@pytest.mark.parametrize("database_password", SHORT, indirect=True)
@pytest.mark.usefixtures("database_password")
@pytest.mark.parametrize(
    ("text", "written"),
    [
        (
            "Could not parse SQLAlchemy URL from string "
            "'postgresql+psycopg://epix:epix@db.example/epix' in /work/epix/db.py",
            "Could not parse SQLAlchemy URL from string "
            "'postgresql+psycopg://epix:[redacted]@db.example/epix' in /work/epix/db.py",
        ),
        (
            "invalid dsn: host=db.example user=epix password=epix dbname=epix",
            "invalid dsn: host=db.example user=epix password=[redacted] dbname=epix",
        ),
        (
            "{'host': 'db.example', 'password': 'epix'}",
            "{'host': 'db.example', 'password': '[redacted]'}",
        ),
        ('{"PASSWORD":"epix"}', '{"PASSWORD":"[redacted]"}'),
        ("EPIX_DATABASE_PASSWORD=epix; export", "EPIX_DATABASE_PASSWORD=[redacted]; export"),
        ("Authorization: Bearer epix, user epix", "Authorization: Bearer [redacted], user epix"),
        (
            'missing "=" after "epix" in connection info string',
            'missing "=" after "[redacted]" in connection info string',
        ),
    ],
)
def test_a_short_password_is_taken_out_where_it_stands_as_a_credential(
    text: str, written: str
) -> None:
    assert without_credentials(text) == written


@pytest.mark.parametrize("database_password", ["p%40ss"], indirect=True)
@pytest.mark.usefixtures("database_password")
def test_a_short_password_is_taken_out_of_a_url_as_written_there() -> None:
    """Its @ percent-encoded in the URL (its decoded form is a credential too)."""
    text = "bad URL postgresql://epix:p%40ss@db.example/epix, password='p@ss'"
    assert without_credentials(text) == (
        "bad URL postgresql://epix:[redacted]@db.example/epix, password='[redacted]'"
    )


@pytest.mark.parametrize("database_password", ["twelve-chars"], indirect=True)
@pytest.mark.usefixtures("database_password")
def test_a_long_enough_password_is_taken_out_wherever_it_appears() -> None:
    text = "RuntimeError: twelve-chars is wrong; /srv/twelve-chars/x.py"
    assert without_credentials(text) == "RuntimeError: [redacted] is wrong; /srv/[redacted]/x.py"
