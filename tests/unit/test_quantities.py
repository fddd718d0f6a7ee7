"""The one parser of suffixed quantities (`7000Gi`, `2T`), as the probe's settings and a
request's GPU ram use it."""

from __future__ import annotations

import pytest

from hwledger.schemas.quantities import BINARY_SUFFIXES, suffixed_quantity
from hwledger.schemas.units import GiB, MiB


@pytest.mark.parametrize(("text", "expected"), [
    ("190000", 190000), ("0", 0), ("512Gi", 512 * GiB), ("81920Mi", 81920 * MiB),
    ("1Ki", 1024), ("1Ti", 2**40), ("1Pi", 2**50), ("2T", 2 * 10**12), ("3K", 3000),
    ("5M", 5 * 10**6), ("7G", 7 * 10**9), ("1P", 10**15),
])
def test_every_suffix_scales_the_whole_number(text: str, expected: int) -> None:
    assert suffixed_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "1.5Gi", "-1", "80GB", "80gi", "80 Gi", "1Ei",
                                  "80Gi/s", " 80Gi"])
def test_anything_else_is_none(text: str) -> None:
    assert suffixed_quantity(text) is None


def test_callers_narrow_the_suffixes_and_digits() -> None:
    assert suffixed_quantity("80Gi", BINARY_SUFFIXES) == 80 * GiB
    assert suffixed_quantity("80", BINARY_SUFFIXES) == 80
    assert suffixed_quantity("80G", BINARY_SUFFIXES) is None
    assert suffixed_quantity("1Pi", BINARY_SUFFIXES) is None
    assert suffixed_quantity("9" * 15, max_digits=15) == int("9" * 15)
    assert suffixed_quantity("9" * 16, max_digits=15) is None
    assert suffixed_quantity("9" * 16) == int("9" * 16)
