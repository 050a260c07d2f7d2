-- What a key's first request did, recorded by the store in its own terms
-- rather than as a rendered HTTP answer: `outcome` is the committed
-- command (stream, version, position, events appended), `refusal` the
-- caller's record of a final refusal. The API renders either, the first
-- time and on replay.
--
-- Rows written before this migration hold a rendered answer in
-- status_code/response; they are replayed as they are until they expire
-- (MUSTER_IDEMPOTENCY_TTL_HOURS, 24 by default). A claim in flight (the
-- batch writer's placeholder, never visible outside its transaction) has
-- all four empty.
alter table idempotency_keys
    add column outcome jsonb,
    add column refusal jsonb,
    alter column status_code drop not null,
    alter column response drop not null;
