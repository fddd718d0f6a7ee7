"""Synthetic GroupSpec requests for the query benchmark, and the naive baseline's filter.

`synthetic_request` draws realistic requests over the fleet's GPU mix; `false_positive_request`
draws requests whose prefilter candidates are mostly unplaceable; `naive_match` is the
prefilter's rules evaluated in Python on one loaded row (the baseline and a check of the SQL).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hwledger.deploy.bench.fleet import AUDITORS, GPU_MIX, REGIONS
from hwledger.query import prefilter_conditions
from hwledger.query.screening_filter import BidScreeningFilter
from hwledger.schemas.units import GiB


def _gpu_key(rng: random.Random) -> str:
    vendor, model, _, _ = rng.choices(GPU_MIX, weights=[m[2] for m in GPU_MIX])[0]
    shape = rng.random()
    if shape < 0.15:
        return f"vendor/{vendor}/model/*"
    if shape < 0.3:
        return f"vendor/{vendor}/model/{model}/ram/80Gi"
    return f"vendor/{vendor}/model/{model}"


def synthetic_request(rng: random.Random) -> dict[str, Any]:
    """A realistic GroupSpec: mostly one GPU unit, sometimes alternatives, a second unit, a
    CPU-only service, region or auditor requirements."""
    def unit(with_gpu: bool) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "cpu": {"units": {"val": str(rng.choice((500, 1000, 4000, 8000, 16000)))}},
            "memory": {"quantity": {"val": str(rng.choice((1, 4, 16, 64, 128)) * GiB)}},
            "storage": [{"name": "default",
                         "quantity": {"val": str(rng.choice((1, 10, 100)) * GiB)}}],
        }
        if with_gpu:
            keys = {_gpu_key(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))}
            resource["gpu"] = {"units": {"val": str(rng.choice((1, 1, 2, 4, 8)))},
                               "attributes": [{"key": k, "value": "true"} for k in sorted(keys)]}
        return {"resource": resource, "count": rng.choice((1, 1, 1, 2, 3))}

    units = [unit(rng.random() < 0.85)]
    if rng.random() < 0.25:
        units.append(unit(rng.random() < 0.3))
    requirements: dict[str, Any] = {"attributes": [], "signedBy": {"allOf": [], "anyOf": []}}
    if rng.random() < 0.3:
        requirements["attributes"].append({"key": "region", "value": rng.choice(REGIONS)})
    if rng.random() < 0.1:
        requirements["attributes"].append({"key": "capabilities/gpu/vendor/*", "value": "true"})
    if rng.random() < 0.2:
        requirements["signedBy"]["anyOf"] = [rng.choice(AUDITORS)]
    return {"name": "bench", "requirements": requirements, "resources": units}


def naive_match(row: Mapping[str, Any], screen: BidScreeningFilter,
                online_since: datetime) -> bool:
    """The baseline: the prefilter's rules evaluated in Python on one loaded row."""
    if row["last_seen_at"] is None or row["last_seen_at"] < online_since:
        return False
    asked = [(row[column], getattr(screen, field))
             for field, column in prefilter_conditions.TOTAL_COLUMNS]
    if screen.reclamation_window is not None:
        asked.append((row["reclamation_window"], screen.reclamation_window))
    if any(need > 0 and (have is None or have < need) for have, need in asked):
        return False  # as SQL: a clause only when asked for, and a null column fails it
    free, classes = set(row["gpu_models_free"]), set(row["storage_classes"])
    node_free = set(row["gpu_node_tokens_free"])
    for unit in screen.units:
        if unit.gpu_tokens and not free & set(unit.gpu_tokens):
            return False
        if unit.gpu_node_tokens and not node_free & set(unit.gpu_node_tokens):
            return False
        if not set(unit.storage_classes) <= classes:
            return False
    audited = set(row["audited_by"])
    if not set(screen.signed_by_all_of) <= audited:
        return False
    if screen.signed_by_any_of and not audited & set(screen.signed_by_any_of):
        return False
    attributes: dict[str, str] = row["self_attributes"]
    for attr in screen.attributes:
        if attr.key.endswith("*"):
            prefix = attr.key[:-1]
            if not any(k.startswith(prefix) and "/" not in k[len(prefix):] and v == attr.value
                       for k, v in attributes.items()):
                return False
        elif attributes.get(attr.key) != attr.value:
            return False
    return True


def false_positive_request(rng: random.Random) -> dict[str, Any]:
    """A request whose prefilter candidates are mostly unplaceable: 4 or 8 80 GB SXM A100s on
    one node (the prefilter's node tokens see 4 or 8 80 GB A100s, also at the PCIe ones)."""
    return {"name": "false-positives", "resources": [{"count": 1, "resource": {
        "cpu": {"units": {"val": "1000"}},
        "gpu": {"units": {"val": str(rng.choice((4, 8)))}, "attributes": [
            {"key": "vendor/nvidia/model/a100/ram/80Gi/interface/sxm", "value": "true"}]}}}]}
