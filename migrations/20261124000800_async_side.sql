-- The async side: deployments read model, webhook subscriptions and their
-- deliveries, reports. The job queue itself is apalis-postgres' schema
-- `apalis`, created by its own migrations right after these; it needs hstore.
create extension if not exists hstore;

-- Deployments read model (projection `deployments`), served by
-- GET /v1/deployments/{id}. The document holds the steps with their attempts.
create table read.deployments (
    tenant_id     text        not null,
    deployment_id uuid        not null,
    booking_id    uuid        not null,
    status        text        not null,
    priority      integer     not null,
    steps_done    integer     not null,
    steps_total   integer     not null,
    version       integer     not null,
    requested_at  timestamptz not null,
    updated_at    timestamptz not null,
    position      bigint      not null,
    document      jsonb       not null,
    primary key (tenant_id, deployment_id)
);
create index deployments_by_booking on read.deployments (tenant_id, booking_id);
select muster_secure_read_table('deployments');

-- Webhook subscriptions: configuration, not domain history, so a plain
-- table. A deleted subscription stays (its deliveries refer to it) but
-- matches nothing.
create table webhooks (
    tenant_id   text        not null references tenants (tenant_id),
    webhook_id  uuid        not null,
    url         text        not null,
    event_types text[]      not null,
    secret      text        not null,
    created_at  timestamptz not null default now(),
    deleted_at  timestamptz,
    primary key (tenant_id, webhook_id)
);
create index webhooks_active on webhooks (tenant_id) where deleted_at is null;

-- One row per (subscription, event): the reactor inserts it with its job in
-- the transaction that moves its checkpoint, and the unique key makes a
-- second insert for the same pair impossible.
create table webhook_deliveries (
    tenant_id        text        not null,
    delivery_id      uuid        not null,
    webhook_id       uuid        not null,
    event_position   bigint      not null,
    event_type       text        not null,
    status           text        not null default 'pending'
                     check (status in ('pending', 'delivered', 'dead')),
    attempts         integer     not null default 0,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz not null default now(),
    delivered_at     timestamptz,
    primary key (tenant_id, delivery_id),
    unique (tenant_id, webhook_id, event_position),
    foreign key (tenant_id, webhook_id) references webhooks (tenant_id, webhook_id)
);
create index deliveries_by_webhook on webhook_deliveries (tenant_id, webhook_id, delivery_id);

-- Every attempt of every delivery (and of deployment step calls).
create table webhook_attempts (
    tenant_id    text        not null,
    delivery_id  uuid        not null,
    attempt      integer     not null,
    started_at   timestamptz not null,
    status_code  integer,
    latency_ms   double precision not null,
    error        text,
    primary key (tenant_id, delivery_id, attempt),
    foreign key (tenant_id, delivery_id) references webhook_deliveries (tenant_id, delivery_id)
        on delete cascade
);

-- Reports: the request, its progress, and the file in chunks (written and
-- read streaming, never whole in memory).
create table reports (
    tenant_id     text        not null references tenants (tenant_id),
    report_id     uuid        not null,
    kind          text        not null check (kind in ('utilization', 'bookings', 'status_summary')),
    format        text        not null check (format in ('csv', 'json')),
    range_from    timestamptz not null,
    range_to      timestamptz not null,
    resource_kind text,
    status        text        not null default 'queued'
                  check (status in ('queued', 'running', 'done', 'failed')),
    rows_written  bigint      not null default 0,
    rows_total    bigint,
    bytes         bigint      not null default 0,
    error         text,
    requested_by  text        not null,
    created_at    timestamptz not null default now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    primary key (tenant_id, report_id)
);

create table report_chunks (
    tenant_id text    not null,
    report_id uuid    not null,
    seq       integer not null,
    data      bytea   not null,
    primary key (tenant_id, report_id, seq),
    foreign key (tenant_id, report_id) references reports (tenant_id, report_id) on delete cascade
);
