-- Publishing a resource's reservations to its CalDAV calendar (SPEC §12).
-- What was written there, per reservation: where, with which ETag and
-- SEQUENCE, for which range, so that a move updates the event (SEQUENCE
-- one higher) and a release deletes it, and so that a sync never reads
-- muster's own events back as busy.
create table calendar_published (
    tenant_id      text        not null,
    calendar_id    uuid        not null,
    reservation_id uuid        not null,
    href           text        not null,
    etag           text,
    sequence       integer     not null,
    starts_at      timestamptz not null,
    ends_at        timestamptz not null,
    primary key (tenant_id, calendar_id, reservation_id),
    foreign key (tenant_id, calendar_id) references calendar_links on delete cascade
);

-- What a link last published, as a digest of the reservations it wrote,
-- and when: a watcher compares the digest with what the resource holds
-- now (publish_digest below) and queues a sync when they differ, so that
-- commands pay nothing for publishing.
alter table calendar_links
    add column published_digest text,
    add column published_at     timestamptz;

-- The reservations a publishing link writes: the bookings' own (not
-- holds, not blocks) on the resource that end after a day ago, as one
-- digest. One definition for the watcher and the publisher alike.
create function publish_digest(p_tenant text, p_resource uuid) returns text
    language sql stable as $$
    select md5(coalesce(string_agg(r.reservation_id::text || '@' || r.starts_at::text || '-'
                                   || r.ends_at::text, ',' order by r.reservation_id), ''))
      from reservations r
     where r.tenant_id = p_tenant and r.resource_id = p_resource
       and r.calendar_id is null and r.reservation_id <> r.booking_id
       and (r.expires_at is null or r.expires_at > now())
       and r.ends_at > now() - interval '1 day'
$$;
