"""The query service: which providers could host a deployment request (DESIGN section 6).

- `aggregator`: GroupSpec JSON -> GroupRequest -> BidScreeningFilter (pure);
- `prefilter_conditions`, `prefilter_sql`: the filter -> one parameterized SQL statement;
- `repository`: per-node inventory, position and fleet console reads;
- `binpacker`: exact greedy placement on per-node free capacity (pure);
- `limits`, `placement_run`: the bounds of a request's work; the bin-packer over candidates;
- `service`: reads in one snapshot of the active schema (`connections`: its async pool);
- `answers`: the screening answer and its JSON;
- `screening_models`, `screening_schemas`, `screening_openapi`, `screening_http`: the screening
  routes' parameters, schemas, OpenAPI operations and plain-ASGI serving; `api`: the FastAPI app;
- `bench`: `hwledger bench query`.
"""
