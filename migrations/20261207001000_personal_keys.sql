-- Personal data (SPEC §12): each client's data keys, sealed with the
-- server's MUSTER_SECRET_KEY. Events hold a client's personal fields only
-- sealed with one of these; erasing the client deletes its rows, after
-- which those fields read as erased wherever events are read. A key
-- belongs to one client of one stream (a booking, a waitlist entry):
-- `subject` is the client's lower-case email (null for a client known by
-- name alone), `stream_id` the stream whose events it sealed.
create table personal_keys (
    key_id     uuid        not null,
    tenant_id  text        not null,
    stream_id  uuid        not null,
    subject    text,
    sealed     bytea       not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, key_id)
);
-- An erasure finds the client's keys by email.
create index personal_keys_by_subject on personal_keys (tenant_id, subject)
    where subject is not null;

-- What the server's key seals, to tell at boot whether MUSTER_SECRET_KEY
-- is the key this database's secrets were sealed with.
create table secret_key_check (
    only_row   boolean     primary key default true check (only_row),
    sealed     bytea       not null,
    created_at timestamptz not null default now()
);

-- Erasures, one row each: what was erased, never whom. `subject_digest`
-- is a keyed digest of the email (HMAC with the server's key), so that
-- muster can say a client was erased without keeping their email.
create table client_erasures (
    tenant_id       text        not null,
    erasure_id      uuid        not null,
    subject_digest  bytea       not null,
    keys_deleted    integer     not null,
    events_redacted integer     not null,
    bookings        integer     not null,
    erased_at       timestamptz not null default now(),
    primary key (tenant_id, erasure_id)
);
create index client_erasures_by_subject on client_erasures (tenant_id, subject_digest);
