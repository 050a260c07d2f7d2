use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::aggregate::harness::given;
use crate::policy::BookingPolicy;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn barbers() -> PoolSpec {
    PoolSpec {
        name: " Barbers ".into(),
        members: Members::Explicit(vec![id(1), id(2), id(3)]),
        strategy: Strategy::LeastBooked,
    }
}

fn load(n: u128, minutes: i64, last: Option<&str>) -> MemberLoad {
    MemberLoad {
        resource_id: id(n),
        booked_minutes: minutes,
        last_assigned_at: last.map(at),
    }
}

#[test]
fn a_pool_is_created_once_trimmed_and_changed_by_what_differs() {
    let created = given::<Pool>([])
        .when(PoolCommand::Create(barbers()))
        .then([PoolEvent::Created(PoolSpec {
            name: "Barbers".into(),
            ..barbers()
        })]);
    assert_eq!(created.spec.as_ref().unwrap().name, "Barbers");
    let history = [PoolEvent::Created(PoolSpec {
        name: "Barbers".into(),
        ..barbers()
    })];
    assert!(matches!(
        given::<Pool>(history.clone())
            .when(PoolCommand::Create(barbers()))
            .then_refused(),
        DomainError::AlreadyExists("pool")
    ));
    let changed = given::<Pool>(history.clone())
        .when(PoolCommand::Update(PoolChanges {
            name: Some("Barbers".into()),
            strategy: Some(Strategy::RoundRobin),
            ..PoolChanges::default()
        }))
        .then([PoolEvent::Updated(PoolChanges {
            strategy: Some(Strategy::RoundRobin),
            ..PoolChanges::default()
        })]);
    assert_eq!(changed.spec.unwrap().strategy, Strategy::RoundRobin);
    given::<Pool>(history)
        .when(PoolCommand::Update(PoolChanges::default()))
        .then([]);
    assert!(matches!(
        given::<Pool>([])
            .when(PoolCommand::Update(PoolChanges::default()))
            .then_refused(),
        DomainError::NotFound("pool")
    ));
}

#[test]
fn members_are_one_to_five_hundred_distinct_resources_or_a_selector_that_says_something() {
    given::<Pool>([])
        .when(PoolCommand::Create(PoolSpec {
            name: String::new(),
            members: Members::Explicit(vec![id(1), id(2), id(1)]),
            strategy: Strategy::First,
        }))
        .then_invalid(&["name", "members[2]"]);
    given::<Pool>([])
        .when(PoolCommand::Create(PoolSpec {
            members: Members::Explicit(Vec::new()),
            ..barbers()
        }))
        .then_invalid(&["members"]);
    given::<Pool>([])
        .when(PoolCommand::Create(PoolSpec {
            members: Members::Selector(Selector::default()),
            ..barbers()
        }))
        .then_invalid(&["selector"]);
    given::<Pool>([])
        .when(PoolCommand::Create(PoolSpec {
            members: Members::Selector(Selector {
                kind: Some("room".into()),
                min_capacity: Some(0),
                ..Selector::default()
            }),
            ..barbers()
        }))
        .then_invalid(&["selector.min_capacity"]);
}

#[test]
fn a_selector_takes_resources_that_match_every_part() {
    let room = |seats: Option<u32>, tags: &[&str]| ResourceProfile {
        name: "Room".into(),
        kind: "room".into(),
        capacity: 1,
        timezone: "UTC".into(),
        working_hours: Vec::new(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        seats,
        policy: BookingPolicy::default(),
    };
    let forty = Selector {
        kind: Some("room".into()),
        tags: vec!["ground-floor".into()],
        min_seats: Some(40),
        min_capacity: None,
    };
    assert!(forty.matches(&room(Some(40), &["ground-floor", "quiet"])));
    assert!(!forty.matches(&room(Some(39), &["ground-floor"])));
    assert!(!forty.matches(&room(None, &["ground-floor"])));
    assert!(!forty.matches(&room(Some(60), &["quiet"])));
    let mut van = room(Some(60), &["ground-floor"]);
    van.kind = "vehicle".into();
    assert!(!forty.matches(&van));
}

#[test]
fn strategies_order_free_members_as_documented() {
    let members = [
        load(1, 120, Some("2027-01-01T10:00:00Z")),
        load(2, 0, Some("2027-01-01T12:00:00Z")),
        load(3, 0, None),
        load(4, 60, Some("2027-01-01T09:00:00Z")),
    ];
    assert_eq!(
        Strategy::First.order(&members),
        [id(1), id(2), id(3), id(4)]
    );
    // Fewest reserved minutes that day; the idle tie in member order.
    assert_eq!(
        Strategy::LeastBooked.order(&members),
        [id(2), id(3), id(4), id(1)]
    );
    // Never assigned first, then assigned longest ago.
    assert_eq!(
        Strategy::RoundRobin.order(&members),
        [id(3), id(4), id(1), id(2)]
    );
}

#[test]
fn pool_events_keep_their_shape() {
    let created = PoolEvent::Created(PoolSpec {
        members: Members::Selector(Selector {
            kind: Some("room".into()),
            ..Selector::default()
        }),
        ..barbers()
    });
    let payload = created.to_payload();
    assert_eq!(
        payload,
        serde_json::json!({"name": " Barbers ", "members": {"selector": {"kind": "room"}},
                           "strategy": "least_booked"})
    );
    assert_eq!(
        PoolEvent::from_payload("pool.created", &payload).unwrap(),
        created
    );
}
