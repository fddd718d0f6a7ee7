"""Binary byte units, defined once for every layer (events, tables and requests count bytes)."""

from __future__ import annotations

MiB = 2**20
GiB = 2**30
