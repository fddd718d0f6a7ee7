"""The fleet console's pure answers: GPU rows folded into totals and kinds, the provider list
with its staleness by the online TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hwledger.query.fleet import gpu_availability, provider_list, staleness

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
TTL = timedelta(seconds=900)


def test_gpu_rows_become_kinds_and_the_totals_row_the_totals() -> None:
    rows = [(True, "amd", "mi300x", 192, "oam", 8, 8, 1, 1),
            (True, "nvidia", "h100", 80, "sxm", 12, 5, 2, 1),
            (False, None, None, None, None, 20, 13, 3, 2)]
    assert gpu_availability(rows) == {
        "totals": {"installed": 20, "free": 13, "providers": 3, "providersFree": 2},
        "gpus": [{"vendor": "amd", "model": "mi300x", "ram": "192Gi", "interface": "oam",
                  "installed": 8, "free": 8, "providers": 1, "providersFree": 1},
                 {"vendor": "nvidia", "model": "h100", "ram": "80Gi", "interface": "sxm",
                  "installed": 12, "free": 5, "providers": 2, "providersFree": 1}]}


def test_no_gpus_is_zero_totals() -> None:
    nothing = {"totals": {"installed": 0, "free": 0, "providers": 0, "providersFree": 0},
               "gpus": []}
    assert gpu_availability([(False, None, None, None, None, None, None, 0, 0)]) == nothing
    assert gpu_availability([]) == {"totals": {"installed": 0, "free": 0, "providers": 0,
                                               "providersFree": 0}, "gpus": []}


def test_staleness_follows_the_online_ttl() -> None:
    assert staleness(NOW, NOW, TTL) == "fresh"
    assert staleness(NOW - TTL / 2, NOW, TTL) == "fresh"
    assert staleness(NOW - TTL / 2 - timedelta(seconds=1), NOW, TTL) == "ageing"
    assert staleness(NOW - TTL, NOW, TTL) == "ageing"  # the prefilter's rule: >= now - TTL
    assert staleness(NOW - TTL - timedelta(seconds=1), NOW, TTL) == "offline"
    assert staleness(None, NOW, TTL) == "offline"


def test_provider_list_keeps_model_tokens_and_tells_a_cut() -> None:
    rows = [("p1", "https://p1", "us-west", ["a1"], ["nvidia", "nvidia/h100"], 3, NOW),
            ("p2", None, None, [], [], 0, None)]
    answer = provider_list(rows, 1, NOW, TTL)
    assert answer == {"truncated": True, "providers": [{
        "owner": "p1", "hostUri": "https://p1", "region": "us-west", "auditedBy": ["a1"],
        "gpuModels": ["nvidia/h100"], "freeGpus": 3, "lastSeenAt": "2026-01-01T12:00:00.000Z",
        "staleness": "fresh"}]}
    assert provider_list(rows, 2, NOW, TTL)["providers"][1]["staleness"] == "offline"
    assert not provider_list(rows, 2, NOW, TTL)["truncated"]
