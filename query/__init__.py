"""The query service: which providers could host a deployment request (DESIGN section 6).

- `aggregator`: GroupSpec JSON -> GroupRequest -> BidScreeningFilter (pure);
- `prefilter_conditions`, `prefilter_sql`: the filter -> one parameterized SQL statement;
- `repository`: per-node inventory, position and fleet console reads;
- `binpacker`: exact greedy placement on per-node free capacity (pure);
- `service`: reads in one snapshot of the active schema; `api`: the FastAPI app;
- `bench`: `hwledger bench query`.
"""
