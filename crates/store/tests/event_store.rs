//! Event store guarantees against a real Postgres: gap-free reading while
//! writers commit out of order, atomic appends, optimistic concurrency and
//! upcasting on read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use muster_domain::booking::BookingEvent;
use muster_store::Store;
use muster_store::event_store::{AppendError, EventMetadata, append_to_stream};
use muster_store::testing::TestDatabase;
use rand::Rng;
use uuid::Uuid;

fn tenant() -> muster_domain::TenantId {
    "t".parse().unwrap()
}

fn metadata() -> EventMetadata {
    EventMetadata {
        command_id: Uuid::now_v7(),
        correlation_id: "test".into(),
        causation_id: Uuid::now_v7(),
        actor: "test".into(),
        tenant: "t".parse().unwrap(),
    }
}

/// Appends `count` events to a fresh stream in its own transaction, holding
/// it open for `hold` before committing; returns the last position.
async fn append_held(store: &Store, count: usize, hold: Duration) -> i64 {
    let mut tx = store.pool().begin().await.unwrap();
    let events = vec![BookingEvent::Confirmed; count];
    let last = append_to_stream(
        &mut tx,
        &tenant(),
        "booking",
        Uuid::now_v7(),
        0,
        &events,
        &metadata(),
    )
    .await
    .unwrap();
    tokio::time::sleep(hold).await;
    tx.commit().await.unwrap();
    last
}

/// How a tailing reader reads the log.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// Its own reads: [`Store::read_all`].
    Alone,
    /// Pages shared with the other followers in the process, `limit` at a
    /// time: [`Store::read_shared_page`].
    Shared { limit: i64 },
}

/// Tails the log until `done` is set and nothing more comes; returns the
/// positions seen, in the order seen.
fn tail(
    store: &Store,
    reading: Reading,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<i64>> {
    let store = store.clone();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let batch: Vec<i64> = match reading {
                Reading::Alone => store
                    .read_all(after, 500)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.position)
                    .collect(),
                Reading::Shared { limit } => {
                    let page = store.read_shared_page(after, limit).await.unwrap();
                    assert!(page.events().len() as i64 <= limit, "a page over its limit");
                    page.events().iter().map(|e| e.position).collect()
                }
            };
            if batch.is_empty() && finished {
                break;
            }
            for position in batch {
                seen.push(position);
                after = position;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tailing_readers_see_every_event_once_in_order_while_writers_commit_out_of_order() {
    const WRITERS: usize = 12;
    const APPENDS_PER_WRITER: usize = 250;
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let done = Arc::new(AtomicBool::new(false));

    // One reader on its own and four sharing pages with different limits,
    // as the read models and reactors of `muster serve` do.
    let readings = [
        Reading::Alone,
        Reading::Shared { limit: 500 },
        Reading::Shared { limit: 500 },
        Reading::Shared { limit: 64 },
        Reading::Shared { limit: 7 },
    ];
    let readers: Vec<_> = readings
        .iter()
        .map(|reading| (*reading, tail(&store, *reading, done.clone())))
        .collect();

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut appended = 0;
            for _ in 0..APPENDS_PER_WRITER {
                // Mostly quick commits, some held open long enough that
                // later positions commit first.
                let hold = match rand::rng().random_range(0..10) {
                    0 => Duration::from_millis(rand::rng().random_range(5..30)),
                    1..=3 => Duration::from_millis(1),
                    _ => Duration::ZERO,
                };
                let count = rand::rng().random_range(1..=3);
                append_held(&store, count, hold).await;
                appended += count;
            }
            appended
        }));
    }
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);

    let in_table: BTreeSet<i64> = sqlx::query_scalar("select position from events")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(in_table.len(), written, "every append is stored");
    for (reading, reader) in readers {
        let seen = reader.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{reading:?}: positions not strictly increasing"
        );
        let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            seen_set.len(),
            seen.len(),
            "{reading:?}: an event was seen twice"
        );
        let missed: Vec<_> = in_table.difference(&seen_set).take(10).collect();
        assert!(missed.is_empty(), "{reading:?}: missed events {missed:?}");
        assert_eq!(seen_set, in_table);
    }
}

#[tokio::test]
async fn a_page_one_follower_read_answers_the_next_without_a_read() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let first = append_held(&store, 10, Duration::ZERO).await;

    let read = store.read_shared_page(0, 100).await.unwrap();
    assert_eq!(read.events().len(), 10);
    assert_eq!(read.horizon, first);
    // Appended after the first follower's read: a fresh read would return
    // it, the shared page does not, and says how far it is complete.
    let later = append_held(&store, 5, Duration::ZERO).await;
    let shared = store.read_shared_page(0, 100).await.unwrap();
    let positions = |page: &muster_store::SharedPage| -> Vec<i64> {
        page.events().iter().map(|e| e.position).collect()
    };
    assert_eq!(positions(&shared), positions(&read));
    assert_eq!(shared.horizon, first);
    // A follower further on gets the rest of the page and its limit holds.
    let middle = read.events()[3].position;
    let part = store.read_shared_page(middle, 4).await.unwrap();
    assert_eq!(positions(&part), positions(&read)[4..8].to_vec());
    assert_eq!(part.horizon, read.events()[7].position);
    // From the end of the shared page on, a new read.
    let rest = store.read_shared_page(first, 100).await.unwrap();
    assert_eq!(rest.events().len(), 5);
    assert_eq!(rest.horizon, later);
}

#[tokio::test]
async fn the_safe_position_waits_for_a_transaction_that_drew_an_earlier_position() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());

    // T1 draws a position and stays open; T2 draws a later one and commits.
    let mut t1 = store.pool().begin().await.unwrap();
    let p1 = append_to_stream(
        &mut t1,
        &tenant(),
        "booking",
        Uuid::now_v7(),
        0,
        &[BookingEvent::Confirmed],
        &metadata(),
    )
    .await
    .unwrap();
    let p2 = append_held(&store, 1, Duration::ZERO).await;
    assert!(p2 > p1);

    // A naive "position > last" reader already sees p2 and would skip p1.
    let naive: Vec<i64> =
        sqlx::query_scalar("select position from events where position > 0 order by position")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(naive, vec![p2]);
    // The store does not read past p1 while it can still commit.
    assert!(store.safe_position().await.unwrap() < p1);
    assert!(store.read_all(0, 100).await.unwrap().is_empty());

    t1.commit().await.unwrap();
    let read: Vec<i64> = store
        .read_all(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(read, vec![p1, p2]);
}

#[tokio::test]
async fn a_rolled_back_append_does_not_hold_readers_back() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let mut tx = store.pool().begin().await.unwrap();
    append_to_stream(
        &mut tx,
        &tenant(),
        "booking",
        Uuid::now_v7(),
        0,
        &[BookingEvent::Confirmed],
        &metadata(),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let p = append_held(&store, 1, Duration::ZERO).await;
    let read: Vec<i64> = store
        .read_all(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(read, vec![p]);
}

#[tokio::test]
async fn a_multi_event_append_is_atomic_and_a_stale_version_is_refused() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let stream = Uuid::now_v7();
    let mut conn = store.pool().acquire().await.unwrap();
    let events = [
        BookingEvent::Confirmed,
        BookingEvent::Started,
        BookingEvent::Completed,
    ];
    append_to_stream(
        &mut conn,
        &tenant(),
        "booking",
        stream,
        0,
        &events,
        &metadata(),
    )
    .await
    .unwrap();
    // Version 2 is taken: the whole append fails, nothing of it is stored.
    let stale = append_to_stream(
        &mut conn,
        &tenant(),
        "booking",
        stream,
        1,
        &events,
        &metadata(),
    )
    .await;
    assert!(matches!(stale, Err(AppendError::VersionConflict)));
    let versions: Vec<i32> =
        sqlx::query_scalar("select stream_version from events where stream_id = $1 order by 1")
            .bind(stream)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3]);
}

#[tokio::test]
async fn old_payloads_are_upcast_on_read() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    // A booking.requested written by schema version 1 (flat client fields).
    let stream = Uuid::now_v7();
    sqlx::query(
        r#"insert into events (tenant_id, stream_type, stream_id, stream_version, event_type,
                               schema_version, payload, metadata)
           values ('t', 'booking', $1, 1, 'booking.requested', 1,
                   '{"title":"Gala","client_name":"Ann","client_email":"ann@example.com",
                     "starts_at":"2027-01-01T10:00:00Z","ends_at":"2027-01-01T12:00:00Z",
                     "headcount":3}', '{}')"#,
    )
    .bind(stream)
    .execute(&db.pool)
    .await
    .unwrap();
    let events = store.read_all(0, 10).await.unwrap();
    assert_eq!(events[0].schema_version, 2);
    assert_eq!(events[0].payload["client"]["name"], "Ann");

    // And the aggregate decides on it: confirming the v1 booking works.
    let ctx = muster_store::CommandContext {
        tenant: "t".parse().unwrap(),
        actor: "test".into(),
        correlation_id: "c".into(),
        command_id: Uuid::now_v7(),
        if_match: Some(1),
        idempotency: None,
    };
    let outcome = store
        .execute::<muster_domain::booking::Booking>(
            &ctx,
            stream,
            muster_domain::booking::BookingCommand::Confirm,
        )
        .await
        .unwrap()
        .outcome;
    assert_eq!(outcome.version, 2);
}

#[tokio::test]
async fn committed_appends_wake_listeners_outside_the_append_transaction() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    tokio::spawn(muster_store::wakeup::run_notifier(
        db.pool.clone(),
        store.append_signal(),
        muster_store::wakeup::EVENTS_CHANNEL,
    ));
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener
        .listen(muster_store::wakeup::EVENTS_CHANNEL)
        .await
        .unwrap();

    let ctx = muster_store::CommandContext {
        tenant: "t".parse().unwrap(),
        actor: "test".into(),
        correlation_id: "c".into(),
        command_id: Uuid::now_v7(),
        if_match: None,
        idempotency: None,
    };
    let profile = muster_domain::resource::ResourceProfile {
        name: "Room".into(),
        kind: "room".into(),
        capacity: 1,
        timezone: "UTC".into(),
        working_hours: vec![],
        tags: vec![],
        seats: None,
        policy: Default::default(),
    };
    store
        .execute::<muster_domain::resource::Resource>(
            &ctx,
            Uuid::now_v7(),
            muster_domain::resource::ResourceCommand::Register(profile),
        )
        .await
        .unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await;
    assert!(woken.is_ok(), "no wake-up within 2 s");
}
