//! The bookings fold, without a database.

use muster_domain::Aggregate;
use muster_domain::booking::{
    Booking, BookingChanges, BookingDetails, BookingEvent, Client, Reservation, Task,
};
use uuid::Uuid;

use super::{BookingDocument, ClientView, FoldedBooking, ReservationView, StatusChange, TaskView};
use crate::ProjectionError;
use crate::fold::fold;
use crate::fold::testing::{at, recorded};

const ID: Uuid = Uuid::from_u128(42);
const HALL: Uuid = Uuid::from_u128(1);
const CHEF: Uuid = Uuid::from_u128(2);
const TASK: Uuid = Uuid::from_u128(3);

fn requested() -> BookingEvent {
    BookingEvent::Requested(BookingDetails {
        title: "Wedding".into(),
        client: Client {
            name: "Ada".into(),
            email: None,
            phone: Some("+44 1".into()),
            erased: false,
        },
        starts_at: at(1000),
        ends_at: at(1600),
        headcount: 80,
        notes: None,
        series_id: None,
    })
}

fn reservation(id: u128, resource_id: Uuid, label: Option<&str>) -> Reservation {
    Reservation {
        reservation_id: Uuid::from_u128(id),
        resource_id,
        starts_at: at(1000),
        ends_at: at(1600),
        label: label.map(str::to_owned),
        outside_working_hours: false,
        hold_id: None,
        pool_id: None,
    }
}

/// A booking's life: requested with two reservations, a task, confirmed,
/// changed, rescheduled (its reservations moving with it), then
/// cancelled, releasing what it still held.
fn life() -> Vec<BookingEvent> {
    vec![
        requested(),
        BookingEvent::ReservationAdded(reservation(11, HALL, Some("hall"))),
        BookingEvent::ReservationAdded(reservation(12, CHEF, None)),
        BookingEvent::TaskAdded(Task {
            task_id: TASK,
            title: "Flowers".into(),
            due_at: Some(at(900)),
            assignee_id: Some(CHEF),
        }),
        BookingEvent::Confirmed,
        BookingEvent::Updated(BookingChanges {
            notes: Some("vegetarian".into()),
            headcount: Some(90),
            ..BookingChanges::default()
        }),
        BookingEvent::TaskCompleted { task_id: TASK },
        BookingEvent::Rescheduled {
            starts_at: at(1060),
            ends_at: at(1660),
        },
        BookingEvent::ReservationMoved(Reservation {
            starts_at: at(1060),
            ends_at: at(1660),
            ..reservation(11, HALL, Some("hall"))
        }),
        BookingEvent::ReservationMoved(Reservation {
            starts_at: at(1060),
            ends_at: at(1660),
            ..reservation(12, CHEF, None)
        }),
        BookingEvent::Cancelled {
            reason: Some("rain".into()),
        },
        // The hall from part-way through, the chef entirely.
        BookingEvent::ReservationReleased {
            reservation_id: Uuid::from_u128(11),
            released_from: at(1200),
        },
        BookingEvent::ReservationReleased {
            reservation_id: Uuid::from_u128(12),
            released_from: at(1060),
        },
    ]
}

fn folded_from(
    mut folded: Option<FoldedBooking>,
    first_version: i32,
    events: &[BookingEvent],
) -> Result<FoldedBooking, ProjectionError> {
    for (version, event) in (first_version..).zip(events) {
        let envelope = recorded(Booking::STREAM_TYPE, ID, version, event);
        folded = Some(fold(folded, &envelope, event)?);
    }
    folded.ok_or_else(|| unreachable!("no events"))
}

fn folded(events: &[BookingEvent]) -> Result<FoldedBooking, ProjectionError> {
    folded_from(None, 1, events)
}

fn document(events: &[BookingEvent]) -> BookingDocument {
    folded(events).unwrap().document().unwrap()
}

fn change(status: &str, version: i32) -> StatusChange {
    StatusChange {
        status: status.into(),
        at: at(version),
        version,
        position: 100 + i64::from(version),
        actor: Some("planner-key".into()),
    }
}

#[test]
fn a_requested_booking_shows_its_details_and_first_status() {
    assert_eq!(
        document(&life()[..3]),
        BookingDocument {
            id: ID,
            version: 3,
            position: 103,
            title: "Wedding".into(),
            client: ClientView {
                name: "Ada".into(),
                email: None,
                phone: Some("+44 1".into()),
                erased: false,
            },
            starts_at: at(1000),
            ends_at: at(1600),
            headcount: 80,
            notes: None,
            series_id: None,
            status: "requested".into(),
            reservations: vec![
                ReservationView {
                    reservation_id: Uuid::from_u128(11),
                    resource_id: HALL,
                    starts_at: at(1000),
                    ends_at: at(1600),
                    label: Some("hall".into()),
                    outside_working_hours: false,
                    hold_id: None,
                    pool_id: None,
                },
                ReservationView {
                    reservation_id: Uuid::from_u128(12),
                    resource_id: CHEF,
                    starts_at: at(1000),
                    ends_at: at(1600),
                    label: None,
                    outside_working_hours: false,
                    hold_id: None,
                    pool_id: None,
                },
            ],
            tasks: Vec::new(),
            checked_in_at: None,
            no_show: false,
            status_history: vec![change("requested", 1)],
            requested_at: at(1),
            updated_at: at(3),
        }
    );
}

#[test]
fn a_whole_life_gives_the_document_the_domain_state_shows() {
    let doc = document(&life());
    assert_eq!(
        doc,
        BookingDocument {
            id: ID,
            version: 13,
            position: 113,
            title: "Wedding".into(),
            client: ClientView {
                name: "Ada".into(),
                email: None,
                phone: Some("+44 1".into()),
                erased: false,
            },
            starts_at: at(1060),
            ends_at: at(1660),
            headcount: 90,
            notes: Some("vegetarian".into()),
            series_id: None,
            status: "cancelled".into(),
            reservations: vec![ReservationView {
                reservation_id: Uuid::from_u128(11),
                resource_id: HALL,
                starts_at: at(1060),
                ends_at: at(1200),
                label: Some("hall".into()),
                outside_working_hours: false,
                hold_id: None,
                pool_id: None,
            }],
            tasks: vec![TaskView {
                task_id: TASK,
                title: "Flowers".into(),
                due_at: Some(at(900)),
                assignee_id: Some(CHEF),
                completed: true,
            }],
            checked_in_at: None,
            no_show: false,
            status_history: vec![
                change("requested", 1),
                change("confirmed", 5),
                change("cancelled", 11),
            ],
            requested_at: at(1),
            updated_at: at(13),
        }
    );
}

#[test]
fn every_status_enters_the_history_once() {
    let doc = document(&[
        requested(),
        BookingEvent::Confirmed,
        BookingEvent::Started,
        BookingEvent::TaskAdded(Task {
            task_id: TASK,
            title: "Clean up".into(),
            due_at: None,
            assignee_id: None,
        }),
        BookingEvent::Completed,
    ]);
    assert_eq!(
        doc.status_history,
        [
            change("requested", 1),
            change("confirmed", 2),
            change("in_progress", 3),
            change("completed", 5),
        ]
    );
    assert_eq!(doc.status, "completed");
}

#[test]
fn a_repeat_or_a_gap_is_poison() {
    let booking = folded(&life()[..2]).unwrap();
    for version in [2, 4] {
        let event = recorded(Booking::STREAM_TYPE, ID, version, &BookingEvent::Confirmed);
        let e = fold(Some(booking.clone()), &event, &BookingEvent::Confirmed).unwrap_err();
        assert!(matches!(e, ProjectionError::Poison { .. }), "{e:?}");
    }
    let late = recorded(Booking::STREAM_TYPE, ID, 2, &requested());
    assert!(matches!(
        fold(None::<FoldedBooking>, &late, &requested()),
        Err(ProjectionError::Poison { .. })
    ));
}

#[test]
fn a_stream_must_begin_with_its_request() {
    let e = folded(&[BookingEvent::Confirmed]).unwrap_err();
    assert!(
        e.to_string().contains("the booking was never requested"),
        "{e}"
    );
}

/// A batch boundary loads the stored document: folding on from it must
/// give what one long batch gives, wherever the boundary falls.
#[test]
fn folding_on_from_a_stored_document_is_folding_straight_through() {
    let events = life();
    let mut straight = folded(&events).unwrap();
    // What a batch held is the batch's own (written as rows, not stored).
    straight.envelope.held.clear();
    for split in 1..events.len() {
        let stored = folded(&events[..split]).unwrap().document().unwrap();
        let json = serde_json::to_value(&stored).unwrap();
        let loaded = FoldedBooking::from_document(serde_json::from_value(json).unwrap());
        let mut on = folded_from(Some(loaded.unwrap()), split as i32 + 1, &events[split..]);
        if let Ok(on) = &mut on {
            on.envelope.held.clear();
        }
        assert_eq!(on.unwrap(), straight, "split {split}");
    }
    assert_eq!(straight.state, Booking::from_events(&events));
}

#[test]
fn the_document_keeps_its_wire_shape() {
    let json = serde_json::to_value(document(&life()[..6])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": ID, "version": 6, "position": 106, "title": "Wedding",
            "client": {"name": "Ada", "phone": "+44 1"},
            "starts_at": at(1000), "ends_at": at(1600), "headcount": 90,
            "notes": "vegetarian", "status": "confirmed",
            "reservations": [
                {"reservation_id": Uuid::from_u128(11), "resource_id": HALL,
                 "starts_at": at(1000), "ends_at": at(1600), "label": "hall"},
                {"reservation_id": Uuid::from_u128(12), "resource_id": CHEF,
                 "starts_at": at(1000), "ends_at": at(1600)},
            ],
            "tasks": [{"task_id": TASK, "title": "Flowers", "due_at": at(900),
                       "assignee_id": CHEF, "completed": false}],
            "status_history": [
                {"status": "requested", "at": at(1), "version": 1, "position": 101,
                 "actor": "planner-key"},
                {"status": "confirmed", "at": at(5), "version": 5, "position": 105,
                 "actor": "planner-key"},
            ],
            "requested_at": at(1), "updated_at": at(6),
        })
    );
}

/// Time travel folds each stream of a read of many up to its first
/// missing version, and shows what that prefix shows.
#[test]
fn the_past_is_each_streams_prefix_up_to_a_hole() {
    let events = life();
    let other = Uuid::from_u128(43);
    let mut recorded_events: Vec<_> = (1..=3)
        .map(|v| recorded("booking", ID, v, &events[v as usize - 1]))
        .collect();
    // The other stream lacks its version 2: only version 1 counts.
    recorded_events.push(recorded("booking", other, 1, &events[0]));
    recorded_events.push(recorded("booking", other, 3, &events[2]));
    let documents = super::as_of::documents(&recorded_events).unwrap();
    assert_eq!(documents.len(), 2);
    assert_eq!(
        documents[0],
        folded(&events[..3]).unwrap().document().unwrap()
    );
    assert_eq!(documents[1].id, other);
    assert_eq!(documents[1].version, 1);
    assert!(documents[1].reservations.is_empty());
    assert!(super::as_of::documents(&[]).unwrap().is_empty());
}
