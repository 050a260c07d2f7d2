-- Time travel (SPEC §12): every booking that ever held each resource, so
-- that a schedule as of a past instant folds only the bookings that may
-- have held the resource then, whatever the tenant's size. Written by the
-- bookings projection (never by a command); a booking moved off the
-- resource or cancelled stays listed, as it held the resource once.
create table read.resource_bookings (
    tenant_id   text not null,
    resource_id uuid not null,
    booking_id  uuid not null,
    primary key (tenant_id, resource_id, booking_id)
);
select muster_secure_read_table('resource_bookings');

-- The bookings recorded before this table existed: every resource a
-- reservation was ever added on or moved to.
insert into read.resource_bookings (tenant_id, resource_id, booking_id)
select distinct tenant_id, (payload->>'resource_id')::uuid, stream_id
  from events
 where stream_type = 'booking'
   and event_type in ('reservation.added', 'reservation.moved')
   and payload ? 'resource_id'
on conflict do nothing;
