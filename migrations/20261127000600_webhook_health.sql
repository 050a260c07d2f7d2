-- Endpoints that keep failing are disabled: a 410 Gone at once, or every
-- attempt failing for MUSTER_WEBHOOK_DISABLE_AFTER. `failing_since` is the
-- first failure since the last success.
alter table webhooks
    add column failing_since   timestamptz,
    add column disabled_at     timestamptz,
    add column disabled_reason text;
