"""Hardened XML parsing and the compiled schema cache: the only way EPIX reads XML."""

from epix.xml.parse import parse_xml
from epix.xml.schemas import SCHEMA_DIR, load_schema
from epix.xml.text import xml_text

__all__ = ["SCHEMA_DIR", "load_schema", "parse_xml", "xml_text"]
