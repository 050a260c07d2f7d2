-- The first answer to each Idempotency-Key, committed in the same
-- transaction as the command's events, so a key never maps to an answer
-- whose events were lost, nor to events without an answer.
create table idempotency_keys (
    tenant_id           text        not null,
    idempotency_key     text        not null,
    request_fingerprint bytea       not null,
    status_code         smallint    not null,
    response            jsonb       not null,
    created_at          timestamptz not null default now(),
    primary key (tenant_id, idempotency_key)
);

create index idempotency_keys_by_age on idempotency_keys (created_at);
