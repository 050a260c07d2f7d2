-- How far outside a range another reservation can start or end and still
-- compete with it on this resource: the domain's `ResourceRules::reach()`
-- in seconds, stored by the write side with the rest of the rule. With it
-- one statement can read a resource's rule and what it holds around a
-- range (the conflict check, free time, the free-resource search) instead
-- of reading the rule first. Readers check it against the rule they read
-- and fall back to a second read when it falls short, so a stale value
-- costs a round trip, never a wrong answer.
alter table reservable_resources
    add column reach_secs integer not null default 0 check (reach_secs >= 0);

-- Rows written before: reach is both buffers (policy.rs, `reach`).
update reservable_resources
   set reach_secs = buffer_before_secs + buffer_after_secs
 where buffer_before_secs + buffer_after_secs > 0;
