-- Rebuilds load faster: a rebuild's staging tables carry only their
-- primary keys and unique indexes (what the projections' upserts and
-- deletes use) while they load; `muster_rebuild_finish` then builds the
-- other indexes in bulk, before the swap. (Unlogged staging tables, made
-- logged before the swap, were measured and lost: `set logged` writes the
-- whole table to the WAL again, which took longer than the inserts' own
-- WAL saved. BENCHMARKS.md has the figures.)

create or replace function muster_rebuild_prepare(tables text[]) returns void
language plpgsql
as $$
declare
    t text;
    c record;
    i record;
begin
    foreach t in array tables loop
        execute format('drop table if exists read_rebuild.%I', t);
        execute format(
            'create table read_rebuild.%I (like read.%I including all excluding indexes)',
            t, t);
        for c in
            select conname, pg_get_constraintdef(oid) as def
              from pg_constraint
             where conrelid = format('read.%I', t)::regclass and contype in ('p', 'u', 'x')
        loop
            execute format('alter table read_rebuild.%I add constraint %I %s', t, c.conname, c.def);
        end loop;
        for i in
            select pg_get_indexdef(x.indexrelid) as def
              from pg_index x
             where x.indrelid = format('read.%I', t)::regclass and x.indisunique
               and not exists (select 1 from pg_constraint k where k.conindid = x.indexrelid)
        loop
            execute muster_rebuild_index(i.def, t);
        end loop;
    end loop;
end
$$;

-- An index definition of read.`t` (as `pg_get_indexdef` prints it), on
-- read_rebuild.`t` instead; the index keeps its name (another schema).
create function muster_rebuild_index(def text, t text) returns text
language sql
immutable
as $$
    select replace(def, format(' ON read.%s ', quote_ident(t)),
                        format(' ON read_rebuild.%s ', quote_ident(t)))
$$;

-- Rebuild, between loading and the swap: the staging tables get the live
-- tables' other indexes (built in bulk) and fresh statistics.
create function muster_rebuild_finish(tables text[]) returns void
language plpgsql
as $$
declare
    t text;
    i record;
begin
    foreach t in array tables loop
        for i in
            select pg_get_indexdef(x.indexrelid) as def
              from pg_index x
             where x.indrelid = format('read.%I', t)::regclass and not x.indisunique
        loop
            execute muster_rebuild_index(i.def, t);
        end loop;
        perform muster_rebuild_analyze(array[t]);
    end loop;
end
$$;

-- Rebuild, while loading: statistics for the staging tables, which start
-- empty, so that the projections' statements are planned for their size
-- (a plan made while a table was tiny would scan it whole once it is not).
create function muster_rebuild_analyze(tables text[]) returns void
language plpgsql
as $$
declare
    t text;
begin
    foreach t in array tables loop
        execute format('analyze read_rebuild.%I', t);
    end loop;
end
$$;
