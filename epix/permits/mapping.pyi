"""Types of the compiled ``epix.permits.mapping`` (source: ``mapping.pyx``)."""

from datetime import datetime

from lxml import etree

from epix.permits.model import Permit

def parse_datetime(value: str, *, end_of_day: bool = False) -> datetime: ...
def read_permit(element: etree._Element) -> Permit: ...
