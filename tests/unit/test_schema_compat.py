"""Compatibility gate: every schema version is FULL_TRANSITIVE compatible with its elders."""

from __future__ import annotations

import copy
import json
from itertools import combinations
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from hwledger.schemas.registry import EVENT_TYPES, all_versions


def full_transitive_problems(versions: list[dict[str, Any]]) -> list[str]:
    """Pairs (older, newer) where either cannot read the other's data."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    parsed = [avro.schema.parse(json.dumps(v)) for v in versions]
    problems = []
    for (i, old), (j, new) in combinations(enumerate(parsed), 2):
        for reader, writer, label in ((new, old, "backward"), (old, new, "forward")):
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                problems.append(f"v{i + 1}->v{j + 1} {label}: {result.messages}")
    return problems


# The avro library predates uuid on fixed(16) (Avro 1.12) and reads such a field as a plain
# fixed: the same bytes, so compatibility is judged right; its warning says only that.
@pytest.mark.filterwarnings("ignore:Logical type uuid requires literal type string")
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_version_is_full_transitive_compatible(event_type: str) -> None:
    versions = [s.raw for s in all_versions() if s.event_type == event_type]
    assert versions, event_type
    assert full_transitive_problems(versions) == []


def test_gate_covers_an_event_with_several_versions() -> None:
    assert len([s for s in all_versions() if s.event_type == "RunFinished"]) >= 2


def test_a_new_field_without_default_fails_the_gate() -> None:
    v1 = next(s.raw for s in all_versions() if s.event_type == "RunStarted")
    broken = copy.deepcopy(v1)
    broken["fields"].append({"name": "queue", "type": "string"})
    assert full_transitive_problems([v1, broken])


def test_changing_a_field_type_fails_the_gate() -> None:
    v1 = next(s.raw for s in all_versions() if s.event_type == "ProviderRegistered")
    broken = copy.deepcopy(v1)
    next(f for f in broken["fields"] if f["name"] == "host_uri")["type"] = "long"
    assert full_transitive_problems([v1, broken])
