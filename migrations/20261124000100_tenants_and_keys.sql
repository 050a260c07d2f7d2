-- Tenants and their API keys. Every table in muster carries tenant_id and
-- every key and constraint includes it, so the schema can be distributed by
-- tenant (SPEC §10).

create table tenants (
    tenant_id  text primary key
               check (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at timestamptz not null default now()
);

-- Keys are stored as SHA-256 of the secret: keys are 256-bit random strings,
-- so a slow password hash would add latency to every request and no safety.
create table api_keys (
    tenant_id  text not null references tenants,
    key_id     uuid not null,
    key_hash   bytea not null,
    role       text not null check (role in ('admin', 'planner', 'analyst')),
    created_at timestamptz not null default now(),
    revoked_at timestamptz,
    primary key (tenant_id, key_id),
    unique (tenant_id, key_hash)
);
