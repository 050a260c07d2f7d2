-- Keys have a name (what they are for) and a last-used time, and can be
-- listed and revoked (`revoked_at` was checked but never set until now).
alter table api_keys
    add column name         text,
    add column last_used_at timestamptz;
