"""Web pages for people: customs officers look permits up and endorse them, the Secretariat
reads the registry. Pages are thin: their script calls the same /v1 API as systems do, with the
session cookie, so no rule lives twice."""
