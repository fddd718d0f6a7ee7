"""The query service: which providers could host a deployment request (DESIGN section 6).

- `aggregator`: GroupSpec JSON -> `group_request.GroupRequest` (pure; field validators in
  `request_fields`, GPU attributes in `gpu_attributes`), `screening_filter`: -> the
  BidScreeningFilter;
- `repository`: the filter -> one parameterized SQL statement; per-node inventory reads;
- `binpacker`: exact placement on per-node free capacity (`inventory`), one unit's fill in
  `unit_fill` (pure);
- `service`: reads in one snapshot of the active schema; `api`: the FastAPI app;
- `bench`: `hwledger bench query`.
"""
