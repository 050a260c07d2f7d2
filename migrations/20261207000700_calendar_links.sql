-- External calendars (SPEC §12). A calendar link imports the busy time
-- of a staff member's or a room's own calendar as external blocks: rows
-- of `reservations` whose calendar_id names the link (and whose
-- booking_id is the link's id too). Every reader of reservations (the
-- ledger under its locks, the conflict check, availability, the free
-- search, find-time, pools) therefore counts them with no read of its
-- own; a block fills its resource whatever its capacity. Bookings leave
-- calendar_id null: a nullable column at the end of the row costs them
-- nothing, and the partial index below holds blocks only.
alter table reservations add column calendar_id uuid;

create index reservations_by_calendar on reservations (tenant_id, calendar_id, starts_at)
    where calendar_id is not null;

-- A link as its events left it (the row is their copy, written by the
-- one commit path), and how its syncs go (written by the sync jobs).
-- `sealed` holds the URL and credentials, encrypted with
-- MUSTER_SECRET_KEY; `location` is the URL without credentials, query or
-- fragment, which is all that is ever shown.
create table calendar_links (
    tenant_id        text        not null,
    calendar_id      uuid        not null,
    resource_id      uuid        not null,
    kind             text        not null check (kind in ('ics', 'caldav')),
    location         text        not null,
    sealed           bytea       not null,
    publish          boolean     not null default false,
    show_titles      boolean     not null default false,
    sync_every_secs  integer     not null check (sync_every_secs >= 60),
    created_at       timestamptz not null default now(),
    -- Sync state.
    next_sync_at     timestamptz not null default now(),
    syncing_since    timestamptz,
    etag             text,
    sync_token       text,
    last_synced_at   timestamptz,
    last_changed_at  timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    failures         integer     not null default 0,
    primary key (tenant_id, calendar_id),
    foreign key (tenant_id, resource_id) references reservable_resources
);

create index calendar_links_by_resource on calendar_links (tenant_id, resource_id);
create index calendar_links_due on calendar_links (next_sync_at);

-- What a CalDAV collection held at the last sync, by href: its ETag and
-- the busy ranges it gave, so that an incremental sync (sync-token, or
-- ETags) fetches only what changed and rebuilds the rest from here.
create table calendar_objects (
    tenant_id   text  not null,
    calendar_id uuid  not null,
    href        text  not null,
    etag        text,
    ics         text  not null,
    primary key (tenant_id, calendar_id, href),
    foreign key (tenant_id, calendar_id) references calendar_links on delete cascade
);
