"""SQL composition of the prefilter: one parameterized statement, one overlap clause per unit."""

from __future__ import annotations

from datetime import UTC, datetime

from hwledger.query.group_request import Attribute
from hwledger.query.prefilter_conditions import Shares, shares_from
from hwledger.query.prefilter_sql import prefilter
from hwledger.query.repository import compiled as compiled_sql
from hwledger.query.repository import inventory_sql, inventory_statement
from hwledger.query.screening_filter import BidScreeningFilter, UnitScreen

ONLINE_SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def compiled(screen: BidScreeningFilter) -> tuple[str, dict[str, object]]:
    query = prefilter(screen, ONLINE_SINCE, 100)
    return compiled_sql(query.statement, query.params)


def test_one_overlap_clause_per_unit_with_tokens_and_none_for_empty_units() -> None:
    screen = BidScreeningFilter(total_gpu=3, units=(
        UnitScreen(("nvidia/a100", "nvidia/h100")), UnitScreen(), UnitScreen(("amd",)),
        UnitScreen()))
    sql, params = compiled(screen)
    assert sql.count("gpu_models_free &&") == 2
    assert "gpu_models_free && %(unit0_gpu_tokens)s::TEXT[]" in sql
    assert "gpu_models_free && %(unit2_gpu_tokens)s::TEXT[]" in sql
    assert params["unit0_gpu_tokens"] == ["nvidia/a100", "nvidia/h100"]
    assert params["unit2_gpu_tokens"] == ["amd"]


def test_no_gpu_clause_without_gpu_units() -> None:
    sql, _ = compiled(BidScreeningFilter(total_cpu=1000, units=(UnitScreen(), UnitScreen())))
    assert "gpu_models_free" not in sql
    assert "total_available_cpu >=" in sql and "last_seen_at, " in sql and "online_since" in sql


def test_capacity_storage_signed_by_and_attributes() -> None:
    screen = BidScreeningFilter(
        total_cpu=1, total_memory=2, total_gpu=3, total_ephemeral=4, total_persistent=5,
        max_node_cpu=6, max_node_memory=7, max_node_gpu=8,
        units=(UnitScreen((), ("beta3",)),), signed_by_all_of=("a", "b"),
        signed_by_any_of=("c",),
        attributes=(Attribute("region", "us-west"), Attribute("host/*", "akash")))
    sql, params = compiled(screen)
    for column in ("total_available_cpu", "total_available_memory", "total_available_gpu",
                   "total_available_ephemeral", "total_available_persistent",
                   "max_node_free_cpu", "max_node_free_memory", "max_node_free_gpu"):
        assert f"provider_inventory.{column} >=" in sql
    assert "storage_classes @>" in sql
    assert "audited_by @>" in sql and "audited_by &&" in sql
    assert "self_attributes @>" in sql and "jsonb_each_text" in sql
    assert params["attribute0"] == {"region": "us-west"}
    assert (params["attribute1_prefix"], params["attribute1_value"]) == ("host/", "akash")


def test_gpu_counts_bind_as_bigint_so_huge_requests_cannot_overflow() -> None:
    sql, _ = compiled(BidScreeningFilter(total_gpu=2**40, max_node_gpu=2**40))
    assert "total_available_gpu >= %(total_gpu)s::BIGINT" in sql
    assert "max_node_free_gpu >= %(max_node_gpu)s::BIGINT" in sql


def test_values_are_parameters_never_sql_text() -> None:
    evil = "x'); DROP TABLE provider_inventory; --"
    sql, params = compiled(BidScreeningFilter(
        units=(UnitScreen((evil,), (evil,)),), signed_by_any_of=(evil,),
        attributes=(Attribute(evil, evil), Attribute(evil + "*", evil))))
    assert "DROP" not in sql
    assert any(evil in str(v) for v in params.values())


def test_one_statement_per_shape_values_only_in_parameters() -> None:
    first = prefilter(BidScreeningFilter(total_cpu=1, units=(UnitScreen(("amd",)),)), None, 5)
    second = prefilter(BidScreeningFilter(total_cpu=9, units=(UnitScreen(("nvidia",)),)), None,
                       7)
    assert first.answer is second.answer
    assert second.params == {"total_cpu": 9, "unit0_gpu_tokens": ["nvidia"], "limit": 7}
    sql, _ = compiled_sql(first.answer)
    assert sql.count("FROM provider_inventory") == 1  # the candidates; asOf reads the offsets
    assert "projection_offsets" in sql and "json_agg(json_build_object(" in sql
    assert first.answer_sql("s1")[0] is first.answer_sql("s1")[0]  # compiled once per schema
    qualified, values = second.answer_sql("s1")
    assert "FROM s1.provider_inventory" in qualified and "FROM provider_inventory" not in qualified
    assert values["total_cpu"] == 9 and values["limit"] == 7


def test_globs_and_signed_by_are_checked_behind_an_offset_fence() -> None:
    plain, _ = compiled(BidScreeningFilter(attributes=(Attribute("region", "eu"),),
                                           units=(UnitScreen(("amd",), ("beta3",)),)))
    globbed, _ = compiled(BidScreeningFilter(attributes=(Attribute("region", "eu"),
                                                         Attribute("host/*", "x"))))
    signed, _ = compiled(BidScreeningFilter(signed_by_any_of=("a",)))
    assert "OFFSET" not in plain and "jsonb_each_text" not in plain
    assert "OFFSET" in globbed and "jsonb_each_text(screened.self_attributes)" in globbed
    assert "provider_inventory.self_attributes @>" in globbed
    assert "OFFSET" in signed and "screened.audited_by &&" in signed


def test_the_inventory_statement_takes_the_candidates_as_one_array() -> None:
    sql, params = compiled_sql(inventory_statement(["p1", "p2"]))
    assert "= ANY (" in sql and "LEFT OUTER JOIN provider_nodes" in sql
    assert params == {"provider_ids": ["p1", "p2"]}
    cached = inventory_sql("hwledger_v2")
    assert "%(provider_ids)s::TEXT[]" in cached and "hwledger_v2.provider_nodes" in cached
    assert inventory_sql("hwledger_v2") is cached


def test_common_gpu_tokens_and_attributes_go_behind_the_fence() -> None:
    shares = shares_from((["nvidia", "nvidia/h100", "nvidia/b200"], [0.9, 0.45, 0.03],
                          [{"region": "us-west", "tier": "a"}, {"region": "eu", "tier": "a"}],
                          [0.3, 0.1], ["nvidia#2"], [0.5]))
    assert shares.common_gpu(["nvidia/h100"]) and not shares.common_gpu(["nvidia/b200"])
    assert shares.common_gpu(["nvidia/b200", "nvidia/h100"])
    assert shares.common_attribute("region", "us-west") and shares.common_attribute("tier", "a")
    assert not shares.common_attribute("region", "eu") and not shares.common_attribute("x", "y")
    screen = BidScreeningFilter(units=(UnitScreen(("nvidia/h100",)), UnitScreen(("nvidia/b200",))),
                                attributes=(Attribute("region", "us-west"),
                                            Attribute("region", "eu")))
    sql, _ = compiled_sql(prefilter(screen, ONLINE_SINCE, 100, shares).statement)
    inner, outer = sql.split("OFFSET")
    assert "gpu_models_free && %(unit1_gpu_tokens)s" in inner
    assert "self_attributes @> %(attribute1)s" in inner
    assert "screened.gpu_models_free && %(unit0_gpu_tokens)s" in outer
    assert "screened.self_attributes @> %(attribute0)s" in outer
    assert shares_from(None) == Shares() and shares_from((None,) * 6) == Shares()
    assert "OFFSET" not in compiled(screen)[0]  # no statistics: every index stays usable


def test_node_tokens_take_the_index_and_the_gpu_tokens_they_imply_go_behind_the_fence() -> None:
    shares = shares_from((None, None, None, None, ["nvidia#2", "nvidia/h100#8"], [0.5, 0.01]))
    assert shares.common_gpu_node(["nvidia#2"]) and not shares.common_gpu_node(["nvidia/h100#8"])
    screen = BidScreeningFilter(units=(
        UnitScreen(("nvidia/h100",), gpu_node_tokens=("nvidia/h100#8",)),
        UnitScreen(("nvidia",), gpu_node_tokens=("nvidia#2",))))
    query = prefilter(screen, ONLINE_SINCE, 100, shares)
    inner, outer = compiled_sql(query.statement)[0].split("OFFSET")
    assert "gpu_node_tokens_free && %(unit0_gpu_node_tokens)s" in inner
    assert "screened.gpu_node_tokens_free && %(unit1_gpu_node_tokens)s" in outer
    assert "screened.gpu_models_free && %(unit0_gpu_tokens)s" in outer
    assert "screened.gpu_models_free && %(unit1_gpu_tokens)s" in outer
    assert query.params["unit0_gpu_node_tokens"] == ["nvidia/h100#8"]


def test_leased_ips_and_the_reclamation_window_are_clauses_only_when_asked_for() -> None:
    sql, params = compiled(BidScreeningFilter(total_leased_ip=2, reclamation_window=3600))
    assert "provider_inventory.total_available_leased_ip >= %(total_leased_ip)s::BIGINT" in sql
    assert "provider_inventory.reclamation_window >= %(reclamation_window)s::BIGINT" in sql
    assert (params["total_leased_ip"], params["reclamation_window"]) == (2, 3600)
    plain, _ = compiled(BidScreeningFilter(total_cpu=1))
    assert "leased_ip" not in plain.split("WHERE", 1)[1]
    assert "reclamation_window" not in plain.split("WHERE", 1)[1]


def test_a_limited_prefilter_lists_by_owner_after_the_cursor() -> None:
    screen = BidScreeningFilter(total_cpu=1, signed_by_any_of=("a",))
    paged = prefilter(screen, ONLINE_SINCE, 8, after="p-7")
    assert paged.params["after"] == "p-7" and ("after", "after") in paged.shape
    sql, _ = compiled_sql(paged.statement)
    assert "provider_inventory.provider_id > %(after)s" in sql
    assert sql.count("ORDER BY") == 1 and "OFFSET" not in sql  # an ordered scan, no fence
    assert "provider_inventory.audited_by &&" in sql
    assert "ORDER BY" not in compiled_sql(prefilter(screen, ONLINE_SINCE).statement)[0]
    scan = prefilter(screen, ONLINE_SINCE, 8)  # not paged: the first matches the scan finds
    assert "ORDER BY" not in compiled_sql(scan.statement)[0]
    assert "row_number() OVER ()" in compiled_sql(scan.answer)[0]
    assert compiled_sql(prefilter(screen, ONLINE_SINCE, 8, ordered=True).statement)[0].count(
        "ORDER BY") == 1
    assert "row_number() OVER (ORDER BY candidate_rows.provider_id)" in compiled_sql(
        paged.answer)[0]


def test_ordered_statements_are_never_prepared_so_each_is_planned_with_its_values() -> None:
    screen = BidScreeningFilter(units=(UnitScreen(("nvidia/h100",)),))
    assert prefilter(screen, ONLINE_SINCE, 100).prepare is None  # psycopg's default
    assert prefilter(screen, ONLINE_SINCE, 100, ordered=True).prepare is False
    assert prefilter(screen, ONLINE_SINCE, 100, after="p1").prepare is False
