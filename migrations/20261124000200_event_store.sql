-- The event store: one append-only table, positions from a sequence.

create sequence events_position_seq as bigint;

create table events (
    tenant_id      text        not null,
    stream_id      uuid        not null,
    stream_version integer     not null check (stream_version > 0),
    stream_type    text        not null,
    position       bigint      not null default nextval('events_position_seq'),
    event_type     text        not null,
    schema_version integer     not null check (schema_version > 0),
    payload        jsonb       not null,
    metadata       jsonb       not null,
    recorded_at    timestamptz not null default now(),
    -- Optimistic concurrency: two appends of the same version collide here.
    primary key (tenant_id, stream_id, stream_version),
    unique (tenant_id, position)
);

-- Projections read every tenant's events in position order.
create index events_by_position on events (position);

alter sequence events_position_seq owned by events.position;

-- Gap-free reading in position order without serialising writers
-- ("epoch advisory locks").
--
-- Positions come from the sequence before commit, so transactions commit
-- out of position order, and a reader that remembers "last position seen"
-- would skip an event that commits late. Each appending transaction
-- therefore first takes a SHARED transaction-scoped advisory lock whose key
-- encodes the sequence's current value v (see muster_position_lock_key);
-- every position it then draws is >= v. The lock lives until commit or
-- rollback. Shared locks never wait for each other, so writers do not
-- serialise.
--
-- A reader asks muster_safe_position() for the highest position below
-- which no transaction can still commit, and reads only up to it.

-- Lock keys: the tag 0x4D53 ('MS') in the top 16 bits keeps them apart from
-- any other advisory lock in the database; the low 48 bits hold v.
create function muster_position_lock_key(v bigint) returns bigint
language sql immutable parallel safe
as $$ select (19795::bigint << 48) | v $$;

create function muster_safe_position() returns bigint
language plpgsql volatile
as $$
declare
    allocated bigint;
    oldest_in_flight bigint;
begin
    -- Order matters. Read the sequence FIRST: a writer whose lock the
    -- pg_locks scan below misses takes its lock after the scan, so every
    -- position it draws is above `allocated`.
    select case when is_called then last_value else 0 end
      into allocated
      from events_position_seq;

    -- Then the oldest epoch still held by an appending transaction. Waiting
    -- (ungranted) requests count too: being conservative is always safe.
    select min(((l.classid::bigint << 32) | l.objid::bigint) & 281474976710655)
      into oldest_in_flight
      from pg_locks l
     where l.locktype = 'advisory'
       and l.objsubid = 1
       and l.database = (select oid from pg_database where datname = current_database())
       and (l.classid::bigint >> 16) = 19795;

    if oldest_in_flight is null then
        return allocated;
    end if;
    -- The in-flight writer may draw position oldest_in_flight itself.
    return least(allocated, oldest_in_flight - 1);
end
$$;
