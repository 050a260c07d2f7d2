-- Bookings of a recurring series carry its id: `GET /v1/bookings?series_id`
-- and the series view list them by it.
alter table read.bookings add column series_id uuid;
create index bookings_by_series on read.bookings (tenant_id, series_id, starts_at, booking_id)
    where series_id is not null;
