-- The read side: projection checkpoints, the read models in schema `read`,
-- the analysts' read-only role with row-level security, and the two
-- functions `muster projections rebuild` uses to build a projection's
-- tables afresh and swap them in.

-- One row per projection. The runner updates it in the same transaction as
-- the projection's read-model writes, and takes it FOR UPDATE first, so a
-- crash never loses or double-applies an event and two runners can never
-- both apply the same events. Projections span tenants, so this is one of
-- the few tables without tenant_id (like sqlx's own migrations table).
create table projection_checkpoints (
    name            text        primary key,
    position        bigint      not null default 0 check (position >= 0),
    -- 'running', or 'failed' after a poison event (see failed_position).
    state           text        not null default 'running'
                                check (state in ('running', 'failed')),
    failed_position bigint,
    error           text,
    -- Which process applied the last batch (host:pid).
    owner           text,
    updated_at      timestamptz not null default now()
);

-- An in-progress rebuild: its own checkpoint into schema read_rebuild.
create table projection_rebuilds (
    name       text        primary key,
    position   bigint      not null default 0,
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create schema read;
create schema read_rebuild;

-- Projection `resources`.
create table read.resources (
    tenant_id     text        not null,
    resource_id   uuid        not null,
    name          text        not null,
    kind          text        not null,
    capacity      integer     not null,
    timezone      text        not null,
    working_hours jsonb       not null,
    tags          text[]      not null,
    retired       boolean     not null,
    version       integer     not null,
    registered_at timestamptz not null,
    updated_at    timestamptz not null,
    position      bigint      not null,
    primary key (tenant_id, resource_id)
);
create index resources_by_kind on read.resources (tenant_id, kind, resource_id);

-- Projection `bookings`: one row per booking with the whole answer of
-- GET /v1/bookings/{id} in `document`, plus normalised tables for lists,
-- schedules and analysts.
create table read.bookings (
    tenant_id    text        not null,
    booking_id   uuid        not null,
    title        text        not null,
    client_name  text        not null,
    client_email text,
    client_phone text,
    starts_at    timestamptz not null,
    ends_at      timestamptz not null,
    headcount    integer     not null,
    status       text        not null,
    version      integer     not null,
    requested_at timestamptz not null,
    updated_at   timestamptz not null,
    position     bigint      not null,
    document     jsonb       not null,
    primary key (tenant_id, booking_id)
);
create index bookings_by_start on read.bookings (tenant_id, starts_at, booking_id);
create index bookings_by_status on read.bookings (tenant_id, status, starts_at, booking_id);

create table read.booking_reservations (
    tenant_id      text        not null,
    reservation_id uuid        not null,
    booking_id     uuid        not null,
    resource_id    uuid        not null,
    starts_at      timestamptz not null,
    ends_at        timestamptz not null,
    label          text,
    primary key (tenant_id, reservation_id)
);
create index booking_reservations_by_resource
    on read.booking_reservations (tenant_id, resource_id, starts_at);
create index booking_reservations_by_booking
    on read.booking_reservations (tenant_id, booking_id);

create table read.booking_tasks (
    tenant_id    text        not null,
    task_id      uuid        not null,
    booking_id   uuid        not null,
    title        text        not null,
    due_at       timestamptz,
    assignee_id  uuid,
    completed    boolean     not null,
    primary key (tenant_id, task_id)
);
create index booking_tasks_by_booking on read.booking_tasks (tenant_id, booking_id);

create table read.booking_status_history (
    tenant_id  text        not null,
    booking_id uuid        not null,
    version    integer     not null,
    status     text        not null,
    changed_at timestamptz not null,
    position   bigint      not null,
    primary key (tenant_id, booking_id, version)
);

-- Analysts: a role that may read schema `read` and nothing else, and sees
-- only the tenants granted to its login in read.analyst_tenants.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'muster_analyst') then
        create role muster_analyst nologin;
    end if;
exception
    -- Roles are cluster-wide: another database's migration may create it
    -- at the same moment.
    when duplicate_object or unique_violation then null;
end
$$;

-- Which tenants each analyst login may see. Logins are members of
-- muster_analyst (`create role ann login password '…' in role muster_analyst`).
create table analyst_tenants (
    role_name text not null,
    tenant_id text not null,
    primary key (tenant_id, role_name)
);

-- The tenants the current login may see. SECURITY DEFINER so that analysts
-- need no privilege on analyst_tenants itself.
create function muster_visible_tenants() returns text[]
language sql stable security definer set search_path = public, pg_temp
as $$ select coalesce(array_agg(tenant_id), '{}') from analyst_tenants where role_name = session_user $$;
revoke all on function muster_visible_tenants() from public;
grant execute on function muster_visible_tenants() to muster_analyst;

-- Row-level security and the analysts' grant on one read-model table. Used
-- here and again after a rebuild swaps a fresh table in. The owner (muster
-- itself) is not subject to the policy.
create function muster_secure_read_table(table_name text) returns void
language plpgsql
as $$
begin
    execute format('alter table read.%I enable row level security', table_name);
    execute format('drop policy if exists tenant_isolation on read.%I', table_name);
    execute format(
        'create policy tenant_isolation on read.%I for select to muster_analyst
           using (tenant_id = any (muster_visible_tenants()))', table_name);
    execute format('grant select on read.%I to muster_analyst', table_name);
end
$$;

select muster_secure_read_table(t)
  from unnest(array['resources', 'bookings', 'booking_reservations',
                    'booking_tasks', 'booking_status_history']) as t;

revoke all on schema public from muster_analyst;
revoke all on schema read_rebuild from muster_analyst;
grant usage on schema read to muster_analyst;

-- Rebuild, step 1: empty copies of `tables` (same columns, constraints and
-- indexes) in schema read_rebuild.
create function muster_rebuild_prepare(tables text[]) returns void
language plpgsql
as $$
declare
    t text;
begin
    foreach t in array tables loop
        execute format('drop table if exists read_rebuild.%I', t);
        execute format('create table read_rebuild.%I (like read.%I including all)', t, t);
    end loop;
end
$$;

-- Rebuild, step 2, inside the caller's transaction: the rebuilt tables
-- replace the live ones in one atomic step.
create function muster_rebuild_swap(tables text[]) returns void
language plpgsql
as $$
declare
    t text;
begin
    foreach t in array tables loop
        execute format('drop table read.%I', t);
        execute format('alter table read_rebuild.%I set schema read', t);
        perform muster_secure_read_table(t);
    end loop;
end
$$;
