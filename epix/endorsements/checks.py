"""Input checks for what customs type at the border: quantities and UN/LOCODE ports."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import pycountry

from epix.errors import EpixError

# UN/LOCODE: ISO 3166-1 alpha-2 country, then three of A-Z and 2-9 (0 and 1 are never used, so
# they cannot be confused with O and I). The written form often has a space: "NL RTM".
_LOCODE = re.compile(r"([A-Z]{2}) ?([A-Z2-9]{3})")
# Quantities are stored with six decimals (NUMERIC(20, 6)); SQLite keeps them as a double,
# which holds 15 significant digits, so nine digits before the point keep every quantity exact
# on both backends (and the ledger never rounds a permitted quantity up).
# A quantity typed as text: ASCII digits, an optional point and exponent. Python's Decimal would
# also read "1_000" and other scripts' digits ("١٢"), which a customs system must not guess at.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_FRACTION_DIGITS = 6
MAX_INTEGER_DIGITS = 9


def _is_country(alpha_2: str) -> bool:
    # XA-XZ are ISO 3166 user-assigned codes: the test Parties of the reference instance.
    if "XA" <= alpha_2 <= "XZ":
        return True
    return pycountry.countries.get(alpha_2=alpha_2) is not None


def normalise_port(raw: object, location: str = "port") -> str:
    """The UN/LOCODE in its five-character form, or ``EPIX-QTY-006``."""
    text = raw.strip().upper() if isinstance(raw, str) else None
    match = _LOCODE.fullmatch(text) if text else None
    if text is None or match is None:
        raise EpixError.of(
            "EPIX-QTY-006",
            f"{raw!r} is not a UN/LOCODE (country code and three letters or digits, e.g. NLRTM).",
            location,
        )
    if not _is_country(match.group(1)):
        raise EpixError.of(
            "EPIX-QTY-006",
            f"{raw!r} is not a UN/LOCODE: {match.group(1)} is not an ISO 3166 country code.",
            location,
        )
    return match.group(1) + match.group(2)


def parse_quantity(raw: object, location: str = "quantity") -> Decimal:
    """A positive, finite quantity with at most six decimals, or ``EPIX-QTY-004``.

    Accepts a JSON number or a decimal string; booleans, NaN, infinities, exponents that
    overflow the stored precision, zero and negatives are refused.
    """
    value: Decimal | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int | Decimal):
        value = Decimal(raw)
    elif isinstance(raw, float):
        value = Decimal(repr(raw))
    elif isinstance(raw, str) and _DECIMAL_TEXT.fullmatch(text := raw.strip()):
        try:
            value = Decimal(text)
        except InvalidOperation:  # an exponent beyond Decimal's context
            value = None
    if value is None or not value.is_finite():
        raise EpixError.of(
            "EPIX-QTY-004",
            f"{raw!r} is not a number; give the quantity as a number with a point before"
            " decimals (e.g. 12.5) and no thousands separators.",
            location,
        )
    if value <= 0:
        raise EpixError.of(
            "EPIX-QTY-004", f"The quantity must be greater than zero, not {value}.", location
        )
    problem = precision_problem(value)
    if problem is not None:
        raise EpixError.of("EPIX-QTY-004", problem, location)
    return value


def precision_problem(value: Decimal) -> str | None:
    """Why the ledger could not hold ``value`` exactly (more than six decimals, or nine
    digits before the point), or ``None`` when it can.

    Judged from the digits as written, not through ``Decimal.normalize``: that works in the
    default context, so it raised ``Overflow`` on "1E+1000000", clamped "1E-999999999" to 0
    and rounded a 29th significant digit away (which then passed as six decimals or fewer).
    """
    if not value.is_finite() or value.is_zero():
        return None
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if -(exponent + trailing_zeros) > MAX_FRACTION_DIGITS:
        return f"{value} has more than {MAX_FRACTION_DIGITS} decimal places."
    if value.adjusted() >= MAX_INTEGER_DIGITS:
        return f"{value} is too large for a quantity (at most {MAX_INTEGER_DIGITS} digits)."
    return None
