-- The GiST index over (tenant_id, resource_id, tstzrange) scanned hundreds
-- of pages per lookup: its leading column has one value per tenant, which
-- GiST cannot split on. A btree on (tenant_id, resource_id, starts_at)
-- answers the overlap query as a short range scan, because no reservation
-- is longer than the domain's MAX_RANGE: an overlapping one starts within
-- (candidate start - MAX_RANGE, candidate end).
drop index reservations_by_resource_time;

create index reservations_by_resource_start
    on reservations (tenant_id, resource_id, starts_at);
