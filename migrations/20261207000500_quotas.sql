-- Quotas (SPEC §12): how much a client, a resource, a pool or an API key
-- may book per local day, week or month. A quota is configuration, like a
-- webhook; what it limits is counted in quota_charges, written in the
-- transactions of the commands that book, move, release or end.
create table quotas (
    tenant_id    text        not null,
    name         text        not null,
    scope        text        not null check (scope in ('client', 'resource', 'pool', 'key')),
    period       text        not null check (period in ('day', 'week', 'month')),
    max_bookings integer     check (max_bookings > 0),
    max_minutes  integer     check (max_minutes > 0),
    timezone     text        not null,
    -- Only these subjects; empty: every subject of the scope.
    subjects     text[]      not null default '{}',
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (tenant_id, name),
    check ((max_bookings is null) <> (max_minutes is null))
);

-- What each booking or hold counts for under each quota while it counts:
-- one row per (quota, subject, period) it adds to. A command that books
-- takes an advisory lock per (quota, subject, period) it adds to, counts
-- the rows there, and refuses what would pass the limit; so concurrent
-- commands cannot together pass the last unit.
create table quota_charges (
    tenant_id    text        not null,
    quota_name   text        not null,
    subject      text        not null,
    period_start timestamptz not null,
    -- The booking's id, or the hold's.
    charge_id    uuid        not null,
    minutes      integer     not null,
    -- The API key it counts for under key-scoped quotas (kept across
    -- moves by other keys).
    key_id       text        not null,
    -- A hold's expiry: from then on it no longer counts.
    expires_at   timestamptz,
    primary key (tenant_id, quota_name, subject, period_start, charge_id),
    foreign key (tenant_id, quota_name) references quotas on delete cascade
);
create index quota_charges_by_charge on quota_charges (tenant_id, charge_id);

-- Whether the resource's tenant has quotas: read with the resource's lock
-- by every command that reserves it, so that a tenant without quotas pays
-- nothing for them, and written under that lock when the tenant's first
-- quota is defined or its last removed (a concurrent command then waits,
-- and reads the flag as it is afterwards).
alter table reservable_resources add column quotas boolean not null default false;
