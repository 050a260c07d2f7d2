use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::aggregate::harness::given;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn range(from: &str, to: &str) -> TimeRange {
    TimeRange {
        starts_at: at(from),
        ends_at: at(to),
    }
}

const LINK: Uuid = Uuid::from_u128(7);

fn spec() -> LinkSpec {
    LinkSpec {
        resource_id: Uuid::from_u128(1),
        kind: CalendarKind::Ics,
        location: "https://calendar.example.com/barber.ics".into(),
        sealed: "c2VhbGVk".into(),
        publish: false,
        show_titles: false,
        sync_every_secs: DEFAULT_SYNC_EVERY_SECS,
    }
}

fn busy(uid: &str, from: &str, to: &str, recurrence: Option<&str>) -> Busy {
    Busy {
        uid: uid.into(),
        recurrence_id: recurrence.map(at),
        range: range(from, to),
        title: Some("Dentist".into()),
    }
}

fn window() -> TimeRange {
    range("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
}

fn block(b: &Busy) -> Block {
    Block::from_busy(LINK, b, false)
}

fn linked_with(blocks: &[Block]) -> CalendarLink {
    let mut link = CalendarLink::from_events([&CalendarEvent::Linked(spec())]);
    link.evolve(&CalendarEvent::Synced(Synced {
        added: blocks.to_vec(),
        removed: Vec::new(),
    }));
    link
}

#[test]
fn a_block_keeps_its_id_across_syncs_and_hides_its_title_unless_allowed() {
    let dentist = busy("a", "2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z", None);
    assert_eq!(block(&dentist).block_id, block(&dentist).block_id);
    assert_eq!(block(&dentist).title, None);
    assert_eq!(
        Block::from_busy(LINK, &dentist, true).title.as_deref(),
        Some("Dentist")
    );
    // Two occurrences of one recurring event are two blocks; another link
    // makes other ids.
    let first = busy(
        "w",
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        Some("2026-03-02T09:00:00Z"),
    );
    let second = busy(
        "w",
        "2026-03-09T09:00:00Z",
        "2026-03-09T10:00:00Z",
        Some("2026-03-09T09:00:00Z"),
    );
    assert_ne!(block(&first).block_id, block(&second).block_id);
    assert_ne!(
        block(&first).block_id,
        Block::from_busy(Uuid::from_u128(8), &first, false).block_id
    );
}

#[test]
fn an_unchanged_calendar_records_nothing() {
    let blocks = [block(&busy(
        "a",
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        None,
    ))];
    given::<CalendarLink>([])
        .when(CalendarCommand::Link(spec()))
        .then([CalendarEvent::Linked(spec())]);
    let link = linked_with(&blocks);
    let events = link
        .decide(CalendarCommand::Sync {
            blocks: blocks.to_vec(),
            window: window(),
            meeting: Vec::new(),
        })
        .unwrap();
    assert!(events.is_empty());
}

#[test]
fn a_moved_occurrence_is_removed_and_added_and_a_new_block_meets_bookings() {
    let before = busy(
        "w",
        "2026-03-09T09:00:00Z",
        "2026-03-09T10:00:00Z",
        Some("2026-03-09T09:00:00Z"),
    );
    let gone = busy("g", "2026-03-03T09:00:00Z", "2026-03-03T10:00:00Z", None);
    let link = linked_with(&[block(&before), block(&gone)]);
    let moved = busy(
        "w",
        "2026-03-09T14:00:00Z",
        "2026-03-09T15:00:00Z",
        Some("2026-03-09T09:00:00Z"),
    );
    let booking = Met {
        booking_id: Uuid::from_u128(50),
        reservation_id: Uuid::from_u128(51),
        starts_at: at("2026-03-09T14:30:00Z"),
        ends_at: at("2026-03-09T16:00:00Z"),
    };
    let elsewhere = Met {
        booking_id: Uuid::from_u128(60),
        reservation_id: Uuid::from_u128(61),
        starts_at: at("2026-03-09T15:00:00Z"),
        ends_at: at("2026-03-09T16:00:00Z"),
    };
    let mut removed = vec![block(&before).block_id, block(&gone).block_id];
    removed.sort();
    let state = given::<CalendarLink>([
        CalendarEvent::Linked(spec()),
        CalendarEvent::Synced(Synced {
            added: vec![block(&before), block(&gone)],
            removed: Vec::new(),
        }),
    ])
    .when(CalendarCommand::Sync {
        blocks: vec![block(&moved)],
        window: window(),
        meeting: vec![booking.clone(), elsewhere],
    })
    .then([
        CalendarEvent::Synced(Synced {
            added: vec![block(&moved)],
            removed,
        }),
        CalendarEvent::Conflict(Conflict {
            resource_id: spec().resource_id,
            block: block(&moved),
            booking,
        }),
    ]);
    assert_eq!(state.blocks.len(), 1);
    assert_eq!(state.blocks[&block(&moved).block_id], block(&moved));
    assert_eq!(link.blocks.len(), 2);
}

#[test]
fn past_blocks_leave_with_a_change_and_only_then() {
    let past = busy("p", "2026-02-01T09:00:00Z", "2026-02-01T10:00:00Z", None);
    let kept = busy("k", "2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z", None);
    let link = linked_with(&[block(&past), block(&kept)]);
    assert!(
        link.changes(&[block(&kept)], &window()).is_empty(),
        "a past block alone is no change"
    );
    let new = busy("n", "2026-03-04T09:00:00Z", "2026-03-04T10:00:00Z", None);
    let synced = link.changes(&[block(&kept), block(&new)], &window());
    assert_eq!(synced.added, vec![block(&new)]);
    assert_eq!(synced.removed, vec![block(&past).block_id]);
}

#[test]
fn links_are_checked_and_end_once() {
    let mut short = spec();
    short.sync_every_secs = 30;
    assert!(matches!(
        CalendarLink::default().decide(CalendarCommand::Link(short)),
        Err(DomainError::Invalid(_))
    ));
    let mut publish_ics = spec();
    publish_ics.publish = true;
    assert!(matches!(
        CalendarLink::default().decide(CalendarCommand::Link(publish_ics)),
        Err(DomainError::Invalid(_))
    ));
    let unlinked = given::<CalendarLink>([CalendarEvent::Linked(spec())])
        .when(CalendarCommand::Unlink)
        .then([CalendarEvent::Unlinked]);
    assert_eq!(
        unlinked.decide(CalendarCommand::Unlink),
        Err(DomainError::NotFound("calendar"))
    );
    assert!(matches!(
        unlinked.decide(CalendarCommand::Link(spec())),
        Err(DomainError::AlreadyExists("calendar"))
    ));
}

#[test]
fn events_round_trip_through_their_payloads() {
    let b = block(&busy(
        "a",
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        None,
    ));
    for event in [
        CalendarEvent::Linked(spec()),
        CalendarEvent::Synced(Synced {
            added: vec![b.clone()],
            removed: vec![Uuid::from_u128(3)],
        }),
        CalendarEvent::Unlinked,
    ] {
        let payload = event.to_payload();
        assert_eq!(
            CalendarEvent::from_payload(event.event_type(), &payload).unwrap(),
            event
        );
    }
}
