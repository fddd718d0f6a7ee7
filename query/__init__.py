"""The query service: which providers could host a deployment request (DESIGN section 6).

- `aggregator`: GroupSpec JSON -> GroupRequest -> BidScreeningFilter (pure);
- `repository`: the filter -> one parameterized SQL statement; per-node inventory reads;
- `binpacker`: exact greedy placement on per-node free capacity (pure);
- `service`: reads in one snapshot of the active schema; `api`: the FastAPI app;
- `bench`: `hwledger bench query`.
"""
