"""The query service: which providers could host a deployment request (DESIGN section 6).

- `aggregator`: GroupSpec JSON -> `group_request.GroupRequest` (pure; field validators in
  `request_fields`, GPU attributes in `gpu_attributes`), `screening_filter`: -> the
  BidScreeningFilter;
- `prefilter_conditions`, `prefilter_sql`: the filter -> one parameterized SQL statement;
- `repository`: per-node inventory, position and fleet console reads;
- `binpacker`: exact placement on per-node free capacity (`inventory`), one unit's fill in
  `unit_fill` (pure);
- `limits`, `placement_run`: the bounds of a request's work; the bin-packer over candidates;
- `service`: one consistent read of the active schema per answer (`connections`: its async
  pool);
- `answers`: the screening answer and its JSON;
- `screening_models`, `screening_schemas`, `screening_openapi`, `screening_http`: the screening
  routes' parameters, schemas, OpenAPI operations and plain-ASGI serving (`asgi`: its types);
- `reads`, `read_models`, `read_examples`, `fleet`: the read routes' answers, their response
  models and examples, the fleet console's answers; `cursor`: screening pages;
- `api`: the FastAPI app, `http_metrics`: its Prometheus figures.
"""
