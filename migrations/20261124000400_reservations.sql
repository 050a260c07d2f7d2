-- Write-side state for the no-double-booking guarantee. Both tables are
-- changed only inside command transactions, together with the events that
-- imply the change; they are the store's working set, not read models.

create extension if not exists btree_gist;

-- What the write side must know of a resource to reserve it. Its row is
-- also the per-resource lock: reservers take it FOR NO KEY UPDATE, in
-- resource id order, so that all writers of one resource serialise while
-- writers of different resources never wait for each other.
create table reservable_resources (
    tenant_id   text    not null,
    resource_id uuid    not null,
    capacity    integer not null check (capacity > 0),
    retired     boolean not null default false,
    primary key (tenant_id, resource_id)
);

-- Reservations that hold time: [starts_at, ends_at), half-open like
-- tstzrange's default bounds. A released reservation is deleted, or
-- shortened when it is released while under way.
create table reservations (
    tenant_id      text        not null,
    reservation_id uuid        not null,
    booking_id     uuid        not null,
    resource_id    uuid        not null,
    starts_at      timestamptz not null,
    ends_at        timestamptz not null,
    label          text,
    primary key (tenant_id, reservation_id),
    foreign key (tenant_id, resource_id) references reservable_resources,
    check (starts_at < ends_at)
);

create index reservations_by_resource_time
    on reservations using gist (tenant_id, resource_id, tstzrange(starts_at, ends_at));
