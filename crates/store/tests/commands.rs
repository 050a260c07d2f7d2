//! Command guarantees against a real Postgres, under real concurrency: no
//! lost update, no double-booking (capacity 1 and above), releases free the
//! slot, capacity decreases are guarded.

use chrono::{DateTime, Duration, TimeZone, Utc};
use muster_domain::booking::{Booking, BookingCommand, BookingDetails, Client, Reservation, Task};
use muster_domain::capacity::peak_concurrency;
use muster_domain::resource::{Resource, ResourceChanges, ResourceCommand, ResourceProfile};
use muster_domain::time::TimeRange;
use muster_store::testing::TestDatabase;
use muster_store::{CommandContext, Store, StoreError};
use uuid::Uuid;

fn ctx(if_match: Option<i64>) -> CommandContext {
    CommandContext {
        tenant: "t".parse().unwrap(),
        actor: "test".into(),
        correlation_id: "c".into(),
        command_id: Uuid::now_v7(),
        if_match,
        idempotency: None,
    }
}

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 7, 0, 0, 0).unwrap() + Duration::hours(hour)
}

async fn resource(store: &Store, capacity: u32) -> Uuid {
    let id = Uuid::now_v7();
    let profile = ResourceProfile {
        name: "Room".into(),
        kind: "room".into(),
        capacity,
        timezone: "UTC".into(),
        working_hours: vec![],
        tags: vec![],
        seats: None,
        policy: Default::default(),
    };
    store
        .execute::<Resource>(&ctx(None), id, ResourceCommand::Register(profile))
        .await
        .unwrap();
    id
}

fn request(reservations: Vec<(Uuid, i64, i64)>) -> BookingCommand {
    BookingCommand::Request {
        details: BookingDetails {
            title: "Meeting".into(),
            client: Client {
                name: "Ann".into(),
                email: None,
                phone: None,
                erased: false,
            },
            starts_at: at(0),
            ends_at: at(24),
            headcount: 2,
            notes: None,
            series_id: None,
        },
        reservations: reservations
            .into_iter()
            .map(|(resource_id, from, to)| Reservation {
                reservation_id: Uuid::now_v7(),
                resource_id,
                starts_at: at(from),
                ends_at: at(to),
                label: None,
                outside_working_hours: false,
                hold_id: None,
                pool_id: None,
            })
            .collect(),
    }
}

async fn book(store: &Store, reservations: Vec<(Uuid, i64, i64)>) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    store
        .execute::<Booking>(&ctx(None), id, request(reservations))
        .await
        .map(|_| id)
}

async fn held_ranges(store: &Store, resource_id: Uuid) -> Vec<TimeRange> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("select starts_at, ends_at from reservations where resource_id = $1")
            .bind(resource_id)
            .fetch_all(store.pool())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(starts_at, ends_at)| TimeRange { starts_at, ends_at })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bookings_never_exceed_capacity() {
    let db = TestDatabase::new().await;
    race_for_capacity(&db, Store::new(db.pool.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bookings_never_exceed_capacity_in_group_commit_batches() {
    let db = TestDatabase::new().await;
    race_for_capacity(&db, Store::new(db.pool.clone()).with_batching(3)).await;
}

/// 48 racers for overlapping slots on a capacity-1 and a capacity-3
/// resource, some booking both at once (all or nothing).
async fn race_for_capacity(db: &TestDatabase, store: Store) {
    let single = resource(&store, 1).await;
    let triple = resource(&store, 3).await;
    let mut racers = Vec::new();
    for i in 0..48i64 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            let from = i % 6;
            let wanted = match i % 3 {
                0 => vec![(single, from, from + 2)],
                1 => vec![(triple, from, from + 3)],
                _ => vec![(triple, from, from + 1), (single, from + 1, from + 2)],
            };
            book(&store, wanted).await
        }));
    }
    let mut won = 0;
    let mut lost = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::ReservationConflict(conflicts)) => {
                assert!(!conflicts.is_empty());
                lost += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        won > 0 && lost > 0,
        "the race had no contention: {won} won, {lost} lost"
    );
    assert!(peak_concurrency(&held_ranges(&store, single).await) <= 1);
    assert!(peak_concurrency(&held_ranges(&store, triple).await) <= 3);
    // All or nothing: every stored reservation belongs to a booking whose
    // events exist, and every booking's reservations are all stored.
    let orphans: i64 = sqlx::query_scalar(
        "select count(*) from reservations r where not exists
           (select 1 from events e where e.stream_id = r.booking_id)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    let added: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'reservation.added'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from reservations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(added, rows);
}

#[tokio::test]
async fn a_capacity_of_three_takes_exactly_three_at_once() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let room = resource(&store, 3).await;
    for _ in 0..3 {
        book(&store, vec![(room, 1, 3)]).await.unwrap();
    }
    let refused = book(&store, vec![(room, 2, 4)]).await;
    assert!(matches!(refused, Err(StoreError::ReservationConflict(c)) if c.len() == 3));
    // Back to back with all three is fine: ranges are half-open.
    book(&store, vec![(room, 3, 5)]).await.unwrap();
}

#[tokio::test]
async fn two_reservations_of_one_request_count_against_each_other() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let room = resource(&store, 1).await;
    let refused = book(&store, vec![(room, 1, 3), (room, 2, 4)]).await;
    assert!(matches!(refused, Err(StoreError::ReservationConflict(_))));
    assert!(held_ranges(&store, room).await.is_empty(), "all or nothing");
}

#[tokio::test]
async fn cancelling_and_releasing_free_the_slot() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let room = resource(&store, 1).await;
    let booking = book(&store, vec![(room, 10, 12)]).await.unwrap();
    assert!(book(&store, vec![(room, 11, 13)]).await.is_err());
    store
        .execute::<Booking>(
            &ctx(None),
            booking,
            BookingCommand::Cancel {
                reason: None,
                now: at(0),
            },
        )
        .await
        .unwrap();
    let second = book(&store, vec![(room, 11, 13)]).await.unwrap();

    // Releasing one reservation frees it too.
    let rid: Uuid =
        sqlx::query_scalar("select reservation_id from reservations where booking_id = $1")
            .bind(second)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    store
        .execute::<Booking>(
            &ctx(None),
            second,
            BookingCommand::ReleaseReservation {
                reservation_id: rid,
                now: at(0),
            },
        )
        .await
        .unwrap();
    book(&store, vec![(room, 11, 13)]).await.unwrap();
}

#[tokio::test]
async fn retired_and_unknown_resources_cannot_be_reserved() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let room = resource(&store, 1).await;
    store
        .execute::<Resource>(&ctx(None), room, ResourceCommand::Retire)
        .await
        .unwrap();
    assert!(matches!(
        book(&store, vec![(room, 1, 2)]).await,
        Err(StoreError::RetiredResource(id)) if id == room
    ));
    let ghost = Uuid::now_v7();
    assert!(matches!(
        book(&store, vec![(ghost, 1, 2)]).await,
        Err(StoreError::UnknownResource(id)) if id == ghost
    ));
}

#[tokio::test]
async fn lowering_capacity_below_current_reservations_is_refused() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let room = resource(&store, 2).await;
    book(&store, vec![(room, 1, 3)]).await.unwrap();
    book(&store, vec![(room, 2, 4)]).await.unwrap();
    let lower = |capacity| {
        ResourceCommand::Update(ResourceChanges {
            capacity: Some(capacity),
            ..Default::default()
        })
    };
    let refused = store.execute::<Resource>(&ctx(None), room, lower(1)).await;
    assert!(matches!(
        refused,
        Err(StoreError::CapacityInUse { needed: 2 })
    ));
    store
        .execute::<Resource>(&ctx(None), room, lower(5))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_stream_lose_no_update() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let booking = book(&store, vec![]).await.unwrap();
    let mut adders = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        adders.push(tokio::spawn(async move {
            let task = Task {
                task_id: Uuid::now_v7(),
                title: format!("task {n}"),
                due_at: None,
                assignee_id: None,
            };
            store
                .execute::<Booking>(&ctx(None), booking, BookingCommand::AddTask(task))
                .await
        }));
    }
    for adder in adders {
        adder.await.unwrap().unwrap();
    }
    let tasks: i64 = sqlx::query_scalar(
        "select count(*) from events where stream_id = $1 and event_type = 'task.added'",
    )
    .bind(booking)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tasks, 20);
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_the_current_version() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let booking = book(&store, vec![]).await.unwrap();
    store
        .execute::<Booking>(&ctx(Some(1)), booking, BookingCommand::Confirm)
        .await
        .unwrap();
    let stale = store
        .execute::<Booking>(&ctx(Some(1)), booking, BookingCommand::Start)
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::PreconditionFailed {
            expected: 1,
            actual: 2
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_writers_with_the_same_if_match_one_wins() {
    let db = TestDatabase::new().await;
    let store = Store::new(db.pool.clone());
    let booking = book(&store, vec![]).await.unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let task = Task {
                    task_id: Uuid::now_v7(),
                    title: "t".into(),
                    due_at: None,
                    assignee_id: None,
                };
                store
                    .execute::<Booking>(&ctx(Some(1)), booking, BookingCommand::AddTask(task))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut stale = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::PreconditionFailed { .. }) => stale += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, stale), (1, 1));
}

#[tokio::test]
async fn a_short_booking_inside_a_long_earlier_one_conflicts() {
    for batching in [false, true] {
        let db = TestDatabase::new().await;
        let store = if batching {
            Store::new(db.pool.clone()).with_batching(2)
        } else {
            Store::new(db.pool.clone())
        };
        let room = resource(&store, 1).await;
        // Short history first, so the resource's longest reservation is 1 h.
        book(&store, vec![(room, 0, 1)]).await.unwrap();
        // Then a month-long hold, then a 1 h request deep inside it: the
        // overlap lookup must reach back a month to find the hold.
        book(&store, vec![(room, 24, 24 * 31)]).await.unwrap();
        let inside = book(&store, vec![(room, 24 * 20, 24 * 20 + 1)]).await;
        assert!(
            matches!(inside, Err(StoreError::ReservationConflict(ref c)) if c.len() == 1),
            "batching={batching}: {inside:?}"
        );
    }
}
