-- The write side's copy of each resource's booking rule: everything the
-- one domain rule (muster_domain::policy::ResourceRules) needs to admit a
-- reservation, read under the resource's row lock with its capacity. The
-- resource's events stay the source; these columns follow them in the
-- same transactions.
alter table reservable_resources
    add column timezone           text    not null default 'UTC',
    add column working_hours      jsonb   not null default '[]',
    add column seats              integer check (seats > 0),
    add column buffer_before_secs integer not null default 0 check (buffer_before_secs >= 0),
    add column buffer_after_secs  integer not null default 0 check (buffer_after_secs >= 0),
    add column min_notice_secs    integer check (min_notice_secs >= 0),
    add column max_advance_secs   integer check (max_advance_secs >= 0);

-- Existing resources: their zone from registration, their working hours
-- from the last event that set them (working hours were advisory until
-- now and are enforced from here on; seats and policy did not exist).
update reservable_resources rr
   set timezone = coalesce(reg.payload->>'timezone', 'UTC'),
       working_hours = coalesce(
           (select e.payload->'working_hours'
              from events e
             where e.tenant_id = rr.tenant_id and e.stream_id = rr.resource_id
               and e.stream_type = 'resource' and e.payload ? 'working_hours'
             order by e.stream_version desc
             limit 1),
           '[]')
  from events reg
 where reg.tenant_id = rr.tenant_id and reg.stream_id = rr.resource_id
   and reg.stream_type = 'resource' and reg.stream_version = 1;

-- A hold is a reservation row with an expiry: it counts against capacity
-- in every check while `expires_at` is in the future, whether or not the
-- sweeper that records `hold.expired` has run. Its reservation_id and
-- booking_id are the hold's id.
alter table reservations add column expires_at timestamptz;

-- The resources read model shows seats and policy too (no earlier event
-- set them).
alter table read.resources
    add column seats  integer,
    add column policy jsonb not null default '{}';

-- The sweeper that records `hold.expired` finds due holds by this.
create index reservations_holds_by_expiry on reservations (expires_at)
    where expires_at is not null;
