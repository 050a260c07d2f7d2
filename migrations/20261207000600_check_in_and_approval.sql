-- Check-in and approval deadlines (SPEC §12). A resource's policy may ask
-- that bookings holding it be checked in by their start plus
-- check_in_secs, or confirmed within approval_secs of the reservation
-- being made. The deadlines live on each reservation, and expires_at (the
-- instant every reader stops counting a row, as for holds) is the earlier
-- of them: a booking not checked in or not confirmed in time stops
-- counting at that instant, whether or not the sweeper that records
-- booking.no_show or booking.expired has run. A hold is the row whose
-- reservation_id is its booking_id; a booking's reservations never are.
alter table reservable_resources
    add column check_in_secs integer check (check_in_secs > 0),
    add column approval_secs integer check (approval_secs > 0);

alter table reservations
    add column check_in_by timestamptz,
    add column approve_by  timestamptz;

-- A client's history (GET /v1/clients/{email}) reads their bookings by
-- email, case-insensitively.
create index bookings_by_client on read.bookings (tenant_id, lower(client_email))
    where client_email is not null;
