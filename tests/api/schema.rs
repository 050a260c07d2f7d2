//! The schema stays distributable by tenant (SPEC §10): on a distributed
//! Postgres (Citus, distributing by `tenant_id`) every primary key, unique
//! and exclusion constraint of a tenant-scoped table must include
//! `tenant_id`. This reads the catalog of a fully migrated database and
//! fails on any constraint that would not distribute.

use std::collections::BTreeSet;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_key_of_a_tenant_scoped_table_includes_tenant_id() {
    let app = spawn_app().await;
    let offending: Vec<(String, String, String)> = sqlx::query_as(
        r#"select n.nspname || '.' || c.relname, con.conname, pg_get_constraintdef(con.oid)
             from pg_constraint con
             join pg_class c on c.oid = con.conrelid
             join pg_namespace n on n.oid = c.relnamespace
            where con.contype in ('p', 'u', 'x')
              and n.nspname in ('public', 'read')
              and exists (select 1 from pg_attribute a
                           where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
              and not exists (select 1 from pg_attribute a
                               where a.attrelid = c.oid and a.attname = 'tenant_id'
                                 and a.attnum = any(con.conkey))
            order by 1, 2"#,
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(
        offending.is_empty(),
        "constraints that would not distribute by tenant_id: {offending:#?}"
    );

    // The tables without tenant_id are the reference (or local) tables of a
    // distributed setup; a new one here is a decision to make on purpose.
    let without: BTreeSet<String> = sqlx::query_scalar::<_, String>(
        r#"select n.nspname || '.' || c.relname
             from pg_class c
             join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p') and n.nspname in ('public', 'read')
              and not exists (select 1 from pg_attribute a
                               where a.attrelid = c.oid and a.attname = 'tenant_id'
                                 and not a.attisdropped)"#,
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    eprintln!("reference or local tables (no tenant_id): {without:?}");
    let expected: BTreeSet<String> = [
        "public._sqlx_migrations",
        "public.projection_checkpoints",
        "public.projection_rebuilds",
        "public.secret_key_check",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        without, expected,
        "a table without tenant_id appeared or went: decide whether it is a reference table (docs/scaling.md)"
    );
}
