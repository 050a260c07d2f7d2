-- Calendar feeds: a secret URL per resource (/calendar/{token}.ics) that
-- calendar applications poll without a key. The token names its tenant
-- and is stored hashed, like API keys; a revoked feed answers 404.
create table calendar_feeds (
    tenant_id   text        not null references tenants (tenant_id),
    feed_id     uuid        not null,
    resource_id uuid        not null,
    token_hash  bytea       not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    primary key (tenant_id, feed_id),
    unique (tenant_id, token_hash)
);
