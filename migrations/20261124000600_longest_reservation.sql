-- How far back an overlapping reservation can start: the longest
-- reservation a resource has ever held. With MAX_RANGE (366 days) as the
-- bound, every booking of a busy room scanned a year of its reservations;
-- with the resource's own longest reservation (hours, typically) it scans a
-- few rows. It only grows, under the resource's row lock.
alter table reservable_resources
    add column longest_reservation_secs double precision not null default 0;

update reservable_resources rr
   set longest_reservation_secs = coalesce(
           (select max(extract(epoch from r.ends_at - r.starts_at))::float8
              from reservations r
             where r.tenant_id = rr.tenant_id and r.resource_id = rr.resource_id),
           0);
