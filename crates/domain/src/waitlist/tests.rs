use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;
use crate::aggregate::harness::given;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-06-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn spec() -> EntrySpec {
    EntrySpec {
        target: Target::Resource {
            resource_id: Uuid::from_u128(1),
        },
        starts_at: now() + Duration::days(1),
        ends_at: now() + Duration::days(1) + Duration::hours(1),
        client: Client {
            name: "Ann".into(),
            email: Some("ann@example.com".into()),
            phone: None,
            erased: false,
        },
        offer_ttl: IsoDuration::from_seconds(1800),
        priority: 0,
    }
}

fn offer(hold: u128) -> Offer {
    Offer {
        hold_id: Uuid::from_u128(hold),
        resource_id: Uuid::from_u128(1),
        expires_at: now() + Duration::minutes(30),
    }
}

fn joined() -> WaitlistEvent {
    WaitlistEvent::Joined(spec())
}

#[test]
fn an_entry_joins_once_for_a_range_not_yet_over_with_a_ttl_a_hold_can_have() {
    given::<WaitlistEntry>([])
        .when(WaitlistCommand::Join {
            spec: spec(),
            now: now(),
        })
        .then([joined()]);
    given::<WaitlistEntry>([joined()])
        .when(WaitlistCommand::Join {
            spec: spec(),
            now: now(),
        })
        .then_refused();
    let bad = EntrySpec {
        ends_at: now() - Duration::minutes(1),
        starts_at: now() - Duration::hours(1),
        offer_ttl: IsoDuration::from_seconds(3601),
        priority: 1001,
        ..spec()
    };
    given::<WaitlistEntry>([])
        .when(WaitlistCommand::Join {
            spec: bad,
            now: now(),
        })
        .then_invalid(&["ends_at", "offer_ttl", "priority"]);
}

#[test]
fn an_offer_is_fulfilled_by_its_own_hold_only_while_open() {
    let offered = given::<WaitlistEntry>([joined()])
        .when(WaitlistCommand::Offer(offer(7)))
        .then([WaitlistEvent::Offered(offer(7))]);
    assert_eq!(offered.open_offer(), Some(&offer(7)));
    let history = [joined(), WaitlistEvent::Offered(offer(7))];
    given::<WaitlistEntry>(history.clone())
        .when(WaitlistCommand::Offer(offer(8)))
        .then_refused();
    given::<WaitlistEntry>(history.clone())
        .when(WaitlistCommand::Fulfil {
            hold_id: Uuid::from_u128(8),
            booking_id: Uuid::from_u128(9),
        })
        .then_refused();
    let fulfilled = given::<WaitlistEntry>(history.clone())
        .when(WaitlistCommand::Fulfil {
            hold_id: Uuid::from_u128(7),
            booking_id: Uuid::from_u128(9),
        })
        .then([WaitlistEvent::Fulfilled {
            booking_id: Uuid::from_u128(9),
        }]);
    assert_eq!(fulfilled.status, Some(EntryStatus::Fulfilled));
    assert_eq!(fulfilled.open_offer(), None);
}

#[test]
fn a_lapse_ends_only_the_open_offer_of_that_hold_and_a_lapsed_offer_cannot_be_fulfilled() {
    let history = [joined(), WaitlistEvent::Offered(offer(7))];
    given::<WaitlistEntry>(history.clone())
        .when(WaitlistCommand::Lapse {
            hold_id: Uuid::from_u128(8),
        })
        .then([]);
    let lapsed = given::<WaitlistEntry>(history.clone())
        .when(WaitlistCommand::Lapse {
            hold_id: Uuid::from_u128(7),
        })
        .then([WaitlistEvent::Lapsed {
            hold_id: Uuid::from_u128(7),
        }]);
    assert_eq!(lapsed.status, Some(EntryStatus::Lapsed));
    let mut after = history.to_vec();
    after.push(WaitlistEvent::Lapsed {
        hold_id: Uuid::from_u128(7),
    });
    assert!(matches!(
        given::<WaitlistEntry>(after.clone())
            .when(WaitlistCommand::Fulfil {
                hold_id: Uuid::from_u128(7),
                booking_id: Uuid::from_u128(9),
            })
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
    given::<WaitlistEntry>(after)
        .when(WaitlistCommand::Leave)
        .then_refused();
}

#[test]
fn leaving_is_allowed_while_waiting_or_offered_and_repeats_as_nothing() {
    given::<WaitlistEntry>([joined()])
        .when(WaitlistCommand::Leave)
        .then([WaitlistEvent::Left]);
    given::<WaitlistEntry>([joined(), WaitlistEvent::Offered(offer(7))])
        .when(WaitlistCommand::Leave)
        .then([WaitlistEvent::Left]);
    given::<WaitlistEntry>([joined(), WaitlistEvent::Left])
        .when(WaitlistCommand::Leave)
        .then([]);
}

#[test]
fn payloads_round_trip_and_name_the_target_flat() {
    for event in [
        joined(),
        WaitlistEvent::Offered(offer(7)),
        WaitlistEvent::Fulfilled {
            booking_id: Uuid::from_u128(9),
        },
        WaitlistEvent::Lapsed {
            hold_id: Uuid::from_u128(7),
        },
        WaitlistEvent::Left,
    ] {
        let payload = event.to_payload();
        assert_eq!(
            WaitlistEvent::from_payload(event.event_type(), &payload).unwrap(),
            event
        );
    }
    let payload = joined().to_payload();
    assert_eq!(payload["resource_id"], Uuid::from_u128(1).to_string());
    assert_eq!(payload["offer_ttl"], "PT30M");
    let pool = EntrySpec {
        target: Target::Pool {
            pool_id: Uuid::from_u128(5),
        },
        ..spec()
    };
    let event = WaitlistEvent::Joined(pool);
    assert_eq!(
        WaitlistEvent::from_payload("waitlist.joined", &event.to_payload()).unwrap(),
        event
    );
}
