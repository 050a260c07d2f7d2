-- Replays: `POST /v1/webhooks/{id}/replay {since}` re-sends past events as
-- new deliveries marked with the replay that made them. An event is
-- delivered once per subscription originally, and once per replay.
alter table webhook_deliveries add column replay_of uuid;
alter table webhook_deliveries
    drop constraint webhook_deliveries_tenant_id_webhook_id_event_position_key;
create unique index webhook_deliveries_once
    on webhook_deliveries (tenant_id, webhook_id, event_position) where replay_of is null;
create unique index webhook_deliveries_once_per_replay
    on webhook_deliveries (tenant_id, webhook_id, event_position, replay_of)
    where replay_of is not null;
