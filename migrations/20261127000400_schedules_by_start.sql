-- The schedules of many resources at once (GET /v1/schedule, the
-- dashboard's timeline) read a tenant's reservations in start order
-- within a window; no reservation is longer than 366 days, so the scan
-- starts that far before the window, and ends_at/resource_id ride along
-- in the index.
create index booking_reservations_by_start
    on read.booking_reservations (tenant_id, starts_at, reservation_id)
    include (ends_at, resource_id);
