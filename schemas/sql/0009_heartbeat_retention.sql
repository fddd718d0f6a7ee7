-- Heartbeats and applied_events retention.
-- applied_events keeps each event's event time, so `hwledger db prune` can drop the rows older
-- than the dedup window (a BRIN index: rows arrive in about event-time order, and the index is a
-- few pages however large the table grows). Rows applied before this migration have no event
-- time (null) and are never pruned; a rebuild gives every row its time.
ALTER TABLE applied_events ADD COLUMN occurred_at timestamptz;
CREATE INDEX applied_events_occurred_at ON applied_events USING brin (occurred_at);

-- The event time before which a table's rows were pruned (verify compares only newer rows).
CREATE TABLE retention_horizons (
    table_name      text PRIMARY KEY,
    pruned_before   timestamptz NOT NULL
);

-- A NodeHeartbeated moves only nodes.last_seen_at (not indexed): room left in each page lets
-- that update stay a HOT update, as provider_inventory's since migration 0007.
ALTER TABLE nodes SET (fillfactor = 70);
