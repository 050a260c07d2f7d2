//! Scenario `statements`: the SQL one create-booking command costs
//! Postgres, run by pgbench without muster in between, beside pgbench's
//! single-row insert in the same run.
//!
//! It bounds what muster can reach on a machine: a command locks its
//! resource's row, reads the reservations around the wanted range, inserts
//! the reservation and appends two events (three tables, six indexes),
//! where the baseline inserts one row into one index. `--batch` puts that
//! many commands into each transaction, with the same six statements per
//! transaction, as muster's group commit does (`muster_write_batch_size`
//! in `/metrics` says how many it gathers), on `--writers` connections, as
//! muster's batch writers run them (more connections than writers would
//! measure contention muster never has). `--leave-out` drops one statement
//! from every transaction: what each costs, by difference. The statements
//! write empty copies of muster's tables (their indexes, constraints and
//! foreign key included) in a schema of their own, so that a muster serving
//! the same database never folds these rows.

use anyhow::Context;
use clap::Args;

use crate::{pgbench_insert_rate, pgbench_rate, strings};

/// The schema of the copies the statements write.
const SCHEMA: &str = "muster_bench_statements";
/// The tenant of the scenario's rows.
const TENANT: &str = "muster-bench-statements";
/// Resources the commands spread over, as in `commands`.
const RESOURCES: usize = 1000;

/// muster's group-commit writers (`WRITE_BATCHERS` in `muster`): the
/// connections its batches of commands run on.
const MUSTER_WRITERS: usize = 4;

/// A statement of a command's transaction, to leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Statement {
    /// The resources' rows locked (`Ledger::load`).
    Ledger,
    /// The reservations read around the wanted ranges.
    Around,
    /// The reservations inserted.
    Reservations,
    /// The events appended.
    Events,
}

/// Options of `muster-bench statements`.
#[derive(Debug, Args)]
pub(crate) struct StatementsArgs {
    /// The database: the scenario writes copies of muster's tables in a
    /// schema of its own (`muster_bench_statements`, replaced each run).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// pgbench clients of the single-row insert baseline (the `commands`
    /// scenario's client count).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// pgbench clients running the commands' statements: muster's batch
    /// writers.
    #[arg(long, default_value_t = MUSTER_WRITERS)]
    writers: usize,
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Commands per transaction; each size is one run (`--batch 1 --batch 8`).
    #[arg(long, default_values_t = [1, 8])]
    batch: Vec<usize>,
    /// Leave this statement out of every transaction (to see its cost).
    #[arg(long, value_enum)]
    leave_out: Option<Statement>,
}

/// Runs the baseline, then muster's statements at each batch size.
pub(crate) async fn run(args: StatementsArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let StatementsArgs {
            database_url: url,
            clients,
            writers,
            duration,
            batch: batches,
            leave_out,
        } = args;
        let insert = pgbench_insert_rate(&url, clients, duration)?;
        println!("pgbench:    {insert:.0} single-row inserts/s ({clients} clients, {duration} s)");
        // Prepared, as sqlx runs muster's statements.
        let options = strings(&[
            "-M",
            "prepared",
            "-c",
            &writers.max(1).to_string(),
            "-j",
            &writers.clamp(1, 2).to_string(),
            "-T",
            &duration.to_string(),
        ]);
        let left_out = leave_out
            .and_then(|s| clap::ValueEnum::to_possible_value(&s))
            .map_or(String::new(), |s| format!(", without {}", s.get_name()));
        for batch in batches.into_iter().map(|b| b.max(1)) {
            let transactions = pgbench_rate(&url, &setup(), &script(batch, leave_out), &options)
                .with_context(|| format!("muster's statements, {batch} per transaction"))?;
            let commands = transactions * batch as f64;
            println!(
                "statements: {commands:.0} commands/s in {transactions:.0} transactions/s of {batch} \
                 on {writers} connections{left_out} ({:.1} % of the single-row insert rate)",
                commands * 100.0 / insert
            );
        }
        Ok(())
    })
    .await?
}

/// Empty copies of the tables a command writes, with their indexes,
/// constraints and foreign key, in a schema of their own: the statements
/// run against them, so that muster's followers never see these rows. Then
/// the resources, numbered for pgbench to pick at random.
fn setup() -> String {
    format!(
        "drop schema if exists {SCHEMA} cascade;
         create schema {SCHEMA};
         create table {SCHEMA}.reservable_resources (like public.reservable_resources including all);
         create table {SCHEMA}.reservations (like public.reservations including all);
         alter table {SCHEMA}.reservations add foreign key (tenant_id, resource_id)
             references {SCHEMA}.reservable_resources (tenant_id, resource_id);
         create sequence {SCHEMA}.events_position_seq;
         create table {SCHEMA}.events (like public.events including all);
         alter table {SCHEMA}.events
             alter column position set default nextval('{SCHEMA}.events_position_seq');
         create table {SCHEMA}.numbered (n int primary key, resource_id uuid not null);
         insert into {SCHEMA}.reservable_resources (tenant_id, resource_id, capacity)
         select '{TENANT}', gen_random_uuid(), 1 from generate_series(1, {RESOURCES});
         insert into {SCHEMA}.numbered
         select row_number() over (order by resource_id), resource_id
           from {SCHEMA}.reservable_resources;"
    )
}

/// One transaction of `batch` commands: the statements of `commit.rs`,
/// with the shapes of a command's rows and events, but `leave_out`.
fn script(batch: usize, leave_out: Option<Statement>) -> String {
    let keep = |statement| leave_out != Some(statement);
    let mut lines = Vec::new();
    for i in 0..batch {
        lines.push(format!("\\set n{i} random(1, {RESOURCES})"));
        // An hour among ten years of hours, as `commands` books.
        lines.push(format!("\\set h{i} random(0, 87599)"));
    }
    let numbers: Vec<String> = (0..batch).map(|i| format!(":n{i}::int")).collect();
    let wanted: Vec<String> = (0..batch)
        .map(|i| format!("(:n{i}::int, :h{i}::int)"))
        .collect();
    let (numbers, wanted) = (numbers.join(", "), wanted.join(", "));
    let start = "timestamptz '2030-01-01Z' + make_interval(hours => c.h)";
    let end = "timestamptz '2030-01-01Z' + make_interval(hours => c.h + 1)";
    let metadata = format!(
        r#"{{"actor": "01a226cf-ea4e-7363-a5ca-56c46d146676", "tenant": "{TENANT}", "command_id": "01a226d0-3e35-730e-9fac-1a51a032eb8a", "causation_id": "01a226d0-3e35-730e-9fac-1a51a032eb8a", "correlation_id": "01a226d0-3e35-730e-9fac-1a5034574400"}}"#
    );
    let requested = r#"{"title": "bench", "client": {"name": "Bench Client"}, "ends_at": "2031-03-05T16:00:00Z", "headcount": 2, "starts_at": "2031-03-05T15:00:00Z"}"#;
    let added = r#"{"ends_at": "2031-03-05T16:00:00Z", "starts_at": "2031-03-05T15:00:00Z", "resource_id": "01a226cf-ed1f-7139-b85d-5c540462d850", "reservation_id": "01a226d0-3e35-730e-9fac-1a5245b977de"}"#;
    lines.push("begin;".to_owned());
    // Ledger::load: lock each resource's row, in key order.
    if keep(Statement::Ledger) {
        lines.push(format!(
            "select r.capacity, r.retired, r.longest_reservation_secs, r.timezone, r.working_hours, \
         r.seats, r.buffer_before_secs, r.buffer_after_secs, r.min_notice_secs, r.max_advance_secs \
         from (select distinct b.resource_id from {SCHEMA}.numbered b \
               where b.n in ({numbers}) order by 1) k \
         cross join lateral (select * from {SCHEMA}.reservable_resources rr \
               where rr.tenant_id = '{TENANT}' and rr.resource_id = k.resource_id \
               for no key update offset 0) r;"
        ));
    }
    // around::held_around: the reservations around each wanted range.
    if keep(Statement::Around) {
        lines.push(format!(
            "select h.booking_id, h.reservation_id, h.starts_at, h.ends_at, h.expires_at \
         from (values {wanted}) as c(n, h) \
         join {SCHEMA}.numbered b on b.n = c.n \
         cross join lateral (select * from {SCHEMA}.reservations h \
               where h.tenant_id = '{TENANT}' and h.resource_id = b.resource_id \
                 and h.starts_at > {start} - interval '1 hour' and h.starts_at < {end} \
                 and h.ends_at > {start} and (h.expires_at is null or h.expires_at > now()) \
               offset 0) h;"
        ));
    }
    // working_set::insert_reservations.
    if keep(Statement::Reservations) {
        lines.push(format!(
            "insert into {SCHEMA}.reservations (tenant_id, reservation_id, booking_id, resource_id, \
                                   starts_at, ends_at, label, expires_at) \
         select '{TENANT}', gen_random_uuid(), gen_random_uuid(), b.resource_id, {start}, {end}, \
                null, null \
         from (values {wanted}) as c(n, h) \
         join {SCHEMA}.numbered b on b.n = c.n;"
        ));
    }
    // event_store::append_to_streams: two events per command's stream.
    if keep(Statement::Events) {
        lines.push(format!(
            "with epoch as materialized ( \
             select pg_advisory_xact_lock_shared(muster_position_lock_key(last_value)) \
               from {SCHEMA}.events_position_seq), \
           s as (select gen_random_uuid() as id from generate_series(1, {batch})) \
         insert into {SCHEMA}.events (tenant_id, stream_type, stream_id, stream_version, event_type, \
                             schema_version, payload, metadata) \
         select '{TENANT}', 'booking', s.id, e.v, e.t, e.sv, e.p::jsonb, '{metadata}'::jsonb \
           from epoch, s, (values (1, 'booking.requested', 2, '{requested}'), \
                                  (2, 'reservation.added', 1, '{added}')) as e(v, t, sv, p) \
         returning position;"
        ));
    }
    lines.push("commit;".to_owned());
    lines.join("\n") + "\n"
}
