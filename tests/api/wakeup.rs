//! The queue's wake-up race, made to happen on purpose: a job committed
//! while a worker's fetch is in flight, after the fetch took its snapshot.
//! The fetch comes back empty, and the job's notification arrived while it
//! ran; the worker must fetch again at once (the `muster patch` in
//! `vendor/apalis-core`), not wait for the next poll. Upstream apalis
//! discards that notification, and the job waits for the interval: here
//! an hour, so the test fails on `wait_for`'s 20 s deadline without the
//! patch.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::deployments::wait_for;
use crate::helpers::{spawn_app_with_workers, worker_config};
use crate::reports::request_report;

/// How long the slowed fetch sits on its empty answer: long enough for the
/// test to commit a job inside it on a busy machine.
const FETCH_HELD: &str = "2";

#[tokio::test]
async fn a_job_committed_during_an_empty_fetch_starts_without_waiting_for_the_poll() {
    let mut workers = worker_config();
    workers.poll_interval = Duration::from_secs(3600);
    let app = spawn_app_with_workers(workers).await;
    let db = &app.db.pool;

    // The queue's fetch, slowed once: when armed, the report queue's fetch
    // reads the queue (its snapshot is taken then), and, if it found
    // nothing, holds its empty answer for FETCH_HELD seconds.
    let slowed_fetch = format!(
        "create function apalis.get_jobs(worker_id text, v_job_type text,
                                         v_job_count integer default 5)
         returns setof apalis.jobs language plpgsql volatile as $$
         declare fetched apalis.jobs[];
         begin
             fetched := array(select j from apalis.get_jobs_unslowed(
                                  worker_id, v_job_type, v_job_count) j);
             if cardinality(fetched) = 0 and v_job_type = 'muster.report' then
                 delete from apalis.slow_fetch_armed;
                 if found then perform pg_sleep({FETCH_HELD}); end if;
             end if;
             return query select * from unnest(fetched);
         end $$"
    );
    for statement in [
        "alter function apalis.get_jobs(text, text, integer) rename to get_jobs_unslowed"
            .to_owned(),
        "create table apalis.slow_fetch_armed (armed boolean)".to_owned(),
        slowed_fetch,
        "insert into apalis.slow_fetch_armed values (true)".to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(db)
            .await
            .unwrap();
    }

    // Wake the report worker with nothing to fetch, as a notification of a
    // job another worker took first would.
    sqlx::query(
        r#"select pg_notify('apalis::job::insert',
                  '{"job_type": "muster.report", "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}')"#,
    )
    .execute(db)
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        if fetch_held(db).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker never fetched on the notification"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The job commits, and its notification arrives, inside that fetch.
    let id = request_report(
        &app,
        &json!({"kind": "utilization", "format": "csv",
                "from": "2027-01-04T00:00:00Z", "to": "2027-01-05T00:00:00Z"}),
    )
    .await;
    let still_holding = fetch_held(db).await;
    assert!(
        still_holding,
        "the job must commit while the empty fetch is in flight"
    );

    let done = wait_for(&app, &format!("/v1/reports/{id}"), |b| {
        b["status"] == "done"
    })
    .await;
    assert_eq!(done["status"], "done");
}

/// Whether a fetch of the queue is holding its empty answer right now.
async fn fetch_held(db: &sqlx::PgPool) -> bool {
    sqlx::query_scalar(
        "select exists (select from pg_stat_activity
                         where datname = current_database() and wait_event = 'PgSleep')",
    )
    .fetch_one(db)
    .await
    .unwrap()
}
