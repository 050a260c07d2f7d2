-- A pool's selector (kind, tags, seats, capacity) is evaluated by the
-- write side when a reservation is made: its copy of each resource keeps
-- the kind and tags too, written in the transactions of the resource's
-- own events like the rest of its rule.
alter table reservable_resources
    add column kind text  not null default '',
    add column tags jsonb not null default '[]';

-- Existing resources: their kind from registration, their tags from the
-- last event that set them.
update reservable_resources rr
   set kind = coalesce(reg.payload->>'kind', ''),
       tags = coalesce(
           (select e.payload->'tags'
              from events e
             where e.tenant_id = rr.tenant_id and e.stream_id = rr.resource_id
               and e.stream_type = 'resource' and e.payload ? 'tags'
             order by e.stream_version desc
             limit 1),
           '[]')
  from events reg
 where reg.tenant_id = rr.tenant_id and reg.stream_id = rr.resource_id
   and reg.stream_type = 'resource' and reg.stream_version = 1;
