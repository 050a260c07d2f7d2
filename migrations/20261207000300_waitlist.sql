-- Waitlists (SPEC §12): the write side's copy of each entry, written only
-- in the transactions of the entry's own events, so that the offering loop
-- and the waitlist routes read what was decided. The events stay the
-- record; this is their working set.
create table waitlist_entries (
    tenant_id           text        not null,
    entry_id            uuid        not null,
    -- exactly one of these: a resource, or any member of a pool
    resource_id         uuid,
    pool_id             uuid,
    starts_at           timestamptz not null,
    ends_at             timestamptz not null,
    client              jsonb       not null,
    offer_ttl_seconds   bigint      not null check (offer_ttl_seconds > 0),
    priority            integer     not null,
    status              text        not null
        check (status in ('waiting', 'offered', 'fulfilled', 'lapsed', 'left')),
    -- the current (while offered) or last offer: its hold, the resource
    -- held, and when the hold stops counting
    hold_id             uuid,
    offered_resource_id uuid,
    offer_expires_at    timestamptz,
    booking_id          uuid,
    joined_at           timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    primary key (tenant_id, entry_id),
    check ((resource_id is null) <> (pool_id is null)),
    check (ends_at > starts_at)
);

-- What the offering loop reads each round: open entries only, so a
-- tenant (or a whole database) without any costs an empty index probe.
create index waitlist_entries_open
    on waitlist_entries (tenant_id, priority desc, entry_id)
    where status in ('waiting', 'offered');

-- The listing's filters.
create index waitlist_entries_by_resource
    on waitlist_entries (tenant_id, resource_id, entry_id) where resource_id is not null;
create index waitlist_entries_by_pool
    on waitlist_entries (tenant_id, pool_id, entry_id) where pool_id is not null;
