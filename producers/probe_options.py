"""The probe's configured overrides: allocatable capacity and storage classes, from settings.

Pure. `ProbeOptions.from_env` reads HWLEDGER_ALLOCATABLE_* (a quantity, or -1 for unlimited)
and HWLEDGER_STORAGE_CLASSES (`class=quantity,...`); `parse_quantity` is one setting's
quantity (`7000Gi`, `190000`, `2T`) or a UserError naming the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from hwledger.schemas.errors import UserError
from hwledger.schemas.quantities import suffixed_quantity
from hwledger.schemas.validation import UNLIMITED


@dataclass(frozen=True)
class ProbeOptions:
    """Configured overrides: allocatable capacity (default: host totals) and storage classes."""

    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    ephemeral_storage_bytes: int | None = None
    storage: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProbeOptions:
        """From HWLEDGER_ALLOCATABLE_* (a quantity, or -1 for unlimited) and
        HWLEDGER_STORAGE_CLASSES (`class=quantity,...`)."""
        env = os.environ if env is None else env

        def opt(name: str) -> int | None:
            raw = env.get(name, "").strip()
            if raw == str(UNLIMITED):
                return UNLIMITED
            return parse_quantity(raw, name) if raw else None

        storage = []
        for item in filter(None, (s.strip() for s in env.get("HWLEDGER_STORAGE_CLASSES",
                                                             "").split(","))):
            klass, sep, amount = item.partition("=")
            if not sep or not klass.strip():
                raise UserError(f"HWLEDGER_STORAGE_CLASSES: {item!r} is not class=quantity "
                                "(e.g. beta3=7000Gi)")
            storage.append((klass.strip(), parse_quantity(amount.strip(),
                                                          "HWLEDGER_STORAGE_CLASSES")))
        return cls(opt("HWLEDGER_ALLOCATABLE_CPU_MILLICORES"),
                   opt("HWLEDGER_ALLOCATABLE_MEMORY"),
                   opt("HWLEDGER_ALLOCATABLE_EPHEMERAL_STORAGE"), tuple(storage))


def parse_quantity(text: str, setting: str) -> int:
    """'7000Gi' -> bytes, '190000' -> 190000; UserError naming the setting otherwise."""
    found = suffixed_quantity(text)
    if found is None:
        raise UserError(f"{setting}: {text!r} is not a quantity like 190000, 512Gi or 2T")
    return found
