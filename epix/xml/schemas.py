"""Compiled XSDs, loaded once per process: lxml's XMLSchema is the hot-path validator."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
_lock = threading.Lock()


@cache
def load_schema(relative_path: str) -> etree.XMLSchema:
    """The compiled schema at ``schemas/<relative_path>`` (imports resolved on local disk only)."""
    path = SCHEMA_DIR / relative_path
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with _lock:
        document = etree.parse(str(path), parser=parser)
        return etree.XMLSchema(document)
