"""Suffixed quantities, parsed once for every layer: `7000Gi`, `512Mi`, `2T`, `190000`.

Pure. `suffixed_quantity` reads a whole number with an optional Kubernetes-style suffix (K, M,
G, T, P decimal; Ki, Mi, Gi, Ti, Pi binary), the spelling of the probe's settings
(HWLEDGER_ALLOCATABLE_*, HWLEDGER_STORAGE_CLASSES) and of a request's GPU ram attribute
(`ram/80Gi`); each caller says which suffixes and how many digits it accepts, and raises its
own error on None. (A request's resource quantities are Akash decimal strings instead:
`query.request_fields.parse_quantity`.)
"""

from __future__ import annotations

import re
from collections.abc import Collection

SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
"""Suffix -> multiplier ("" is the bare number)."""
BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti")
_QUANTITY = re.compile(r"^(?P<digits>\d+)(?P<suffix>[KMGTP]i?)?$")


def suffixed_quantity(text: str, suffixes: Collection[str] = tuple(SUFFIXES),
                      max_digits: int | None = None) -> int | None:
    """`7000Gi` -> 7000 * 2**30, `2T` -> 2 * 10**12, `190000` -> 190000; None when `text` is
    not such a quantity, its suffix is not among `suffixes`, or it has more than
    `max_digits` digits."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    digits, suffix = match["digits"], match["suffix"] or ""
    if suffix not in suffixes or (max_digits is not None and len(digits) > max_digits):
        return None
    return int(digits) * SUFFIXES[suffix]
