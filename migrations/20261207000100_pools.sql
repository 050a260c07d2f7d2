-- Pools (SPEC §12): the write side's copy of each pool, written only in
-- the transactions of the pool's own events (like reservable_resources),
-- so that a command picking members reads the pool it is decided on. The
-- pool's events stay the record; this is its working set.
create table pools (
    tenant_id  text        not null,
    pool_id    uuid        not null,
    name       text        not null,
    -- {"explicit": [ids]} or {"selector": {kind, tags, min_seats, min_capacity}}
    members    jsonb       not null,
    strategy   text        not null check (strategy in ('least_booked', 'first', 'round_robin')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, pool_id)
);

-- When a pool last assigned each member (round_robin picks the one
-- assigned longest ago); written when a pick commits.
create table pool_assignments (
    tenant_id        text        not null,
    pool_id          uuid        not null,
    resource_id      uuid        not null,
    last_assigned_at timestamptz not null,
    primary key (tenant_id, pool_id, resource_id),
    foreign key (tenant_id, pool_id) references pools
);
