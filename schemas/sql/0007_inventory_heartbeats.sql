-- Heartbeats update provider_inventory without new index entries: the query side never uses
-- the last_seen_at btree (its online clause is written so the planner keeps it off bitmap
-- plans), and room left in each page lets an update that changes only last_seen_at stay a HOT
-- update. The fill factor applies to pages written from now on (`VACUUM FULL
-- provider_inventory` or a rebuild rewrites the existing ones).
DROP INDEX IF EXISTS provider_inventory_last_seen_at;
ALTER TABLE provider_inventory SET (fillfactor = 70);
