-- Bid screening at parity with Akash (issue 15): leased IPs, reclamation windows and the
-- answer's createdAt / location / organization.
-- A provider's leased IP pool and reclamation window (ProviderRegistered v2; null = no IP
-- operator / no window offered), the leased IPs a run holds (RunStarted v2), and the
-- provider_inventory columns derived from them: total_available_leased_ip is the pool net of
-- the IPs its unfinished runs hold (null = no IP operator), created_at the event time of the
-- provider's earliest own fact, location and organization the signed value of the first
-- auditor (audited_by order) that signed the key, else the self-declared one.
ALTER TABLE providers
    ADD COLUMN leased_ip_capacity bigint CHECK (leased_ip_capacity >= 0),
    ADD COLUMN reclamation_window bigint CHECK (reclamation_window >= 0);
ALTER TABLE runs
    ADD COLUMN leased_ips integer NOT NULL DEFAULT 0 CHECK (leased_ips >= 0);
ALTER TABLE provider_inventory
    ADD COLUMN total_available_leased_ip bigint CHECK (total_available_leased_ip >= 0),
    ADD COLUMN reclamation_window bigint,
    ADD COLUMN created_at timestamptz,
    ADD COLUMN location text,
    ADD COLUMN organization text;

-- Existing rows: location and organization as the projector computes them; created_at from
-- the facts still stored (first snapshot, first run, latest registration), which a rebuild
-- makes exact (an earlier registration replaced since is not stored).
UPDATE provider_inventory i SET
    created_at = (SELECT least(
        (SELECT min(n.first_seen_at) FROM nodes n WHERE n.provider_id = i.provider_id),
        (SELECT min(r.started_at) FROM runs r WHERE r.provider_id = i.provider_id),
        (SELECT p.registered_at FROM providers p WHERE p.provider_id = i.provider_id))),
    location = coalesce(
        (SELECT a.attributes ->> 'location-region' FROM provider_audits a
         WHERE a.provider_id = i.provider_id AND a.attributes ? 'location-region'
         ORDER BY a.auditor LIMIT 1),
        (SELECT p.attributes ->> 'location-region' FROM providers p
         WHERE p.provider_id = i.provider_id)),
    organization = coalesce(
        (SELECT a.attributes ->> 'organization' FROM provider_audits a
         WHERE a.provider_id = i.provider_id AND a.attributes ? 'organization'
         ORDER BY a.auditor LIMIT 1),
        (SELECT p.attributes ->> 'organization' FROM providers p
         WHERE p.provider_id = i.provider_id));
