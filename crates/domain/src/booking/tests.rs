use super::*;
use crate::aggregate::harness::given;
use chrono::{Duration, TimeZone};

fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 6, 12, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn details() -> BookingDetails {
    BookingDetails {
        title: "Smith wedding".into(),
        client: Client {
            name: "Ann Smith".into(),
            email: Some("ann@example.com".into()),
            phone: None,
            erased: false,
        },
        starts_at: t(14),
        ends_at: t(23),
        headcount: 120,
        notes: None,
        series_id: None,
    }
}

fn reservation(n: u128, from: i64, to: i64) -> Reservation {
    Reservation {
        reservation_id: id(n),
        resource_id: id(100 + n),
        starts_at: t(from),
        ends_at: t(to),
        label: Some("hall".into()),
        outside_working_hours: false,
        hold_id: None,
        pool_id: None,
    }
}

fn requested() -> Vec<BookingEvent> {
    vec![
        BookingEvent::Requested(details()),
        BookingEvent::ReservationAdded(reservation(1, 12, 24)),
    ]
}

fn with(mut history: Vec<BookingEvent>, more: &[BookingEvent]) -> Vec<BookingEvent> {
    history.extend_from_slice(more);
    history
}

fn status_of(booking: &Booking) -> BookingStatus {
    booking.status.unwrap()
}

#[test]
fn request_records_the_booking_and_its_reservations() {
    let state = given::<Booking>([])
        .when(BookingCommand::Request {
            details: details(),
            reservations: vec![reservation(1, 12, 24), reservation(2, 14, 16)],
        })
        .then([
            BookingEvent::Requested(details()),
            BookingEvent::ReservationAdded(reservation(1, 12, 24)),
            BookingEvent::ReservationAdded(reservation(2, 14, 16)),
        ]);
    assert_eq!(status_of(&state), BookingStatus::Requested);
    assert_eq!(state.reservations.len(), 2);
}

#[test]
fn request_twice_is_refused() {
    assert_eq!(
        given::<Booking>(requested())
            .when(BookingCommand::Request {
                details: details(),
                reservations: vec![]
            })
            .then_refused(),
        DomainError::AlreadyExists("booking")
    );
}

#[test]
fn request_names_every_invalid_field() {
    let mut bad = details();
    bad.title = String::new();
    bad.client.name = " ".into();
    bad.client.email = Some("not-an-email".into());
    bad.ends_at = bad.starts_at;
    bad.headcount = MAX_HEADCOUNT + 1;
    let mut long_label = reservation(1, 5, 4);
    long_label.label = Some("x".repeat(101));
    let mut second = reservation(2, 1, 2);
    second.label = Some("x".repeat(101));
    given::<Booking>([])
        .when(BookingCommand::Request {
            details: bad,
            reservations: vec![long_label, second],
        })
        .then_invalid(&[
            "title",
            "client.name",
            "client.email",
            "ends_at",
            "headcount",
            "reservations[0].ends_at",
            "reservations[1].label",
        ]);
}

#[test]
fn request_with_too_long_range_or_too_many_reservations_is_refused() {
    let mut long = details();
    long.ends_at = long.starts_at + Duration::days(400);
    given::<Booking>([])
        .when(BookingCommand::Request {
            details: long,
            reservations: vec![],
        })
        .then_invalid(&["ends_at"]);
    let many = (0..=MAX_RESERVATIONS as u128)
        .map(|n| reservation(n, 1, 2))
        .collect();
    given::<Booking>([])
        .when(BookingCommand::Request {
            details: details(),
            reservations: many,
        })
        .then_invalid(&["reservations"]);
}

#[test]
fn the_happy_path_runs_requested_confirmed_in_progress_completed() {
    let state = given::<Booking>(requested())
        .when(BookingCommand::Confirm)
        .then([BookingEvent::Confirmed]);
    assert_eq!(status_of(&state), BookingStatus::Confirmed);
    let history = with(requested(), &[BookingEvent::Confirmed]);
    let state = given::<Booking>(history.clone())
        .when(BookingCommand::Start)
        .then([BookingEvent::Started]);
    assert_eq!(status_of(&state), BookingStatus::InProgress);
    // Completing at 20:00 frees the rest of the 12:00–24:00 reservation.
    let state = given::<Booking>(with(history, &[BookingEvent::Started]))
        .when(BookingCommand::Complete { now: t(20) })
        .then([
            BookingEvent::Completed,
            BookingEvent::ReservationReleased {
                reservation_id: id(1),
                released_from: t(20),
            },
        ]);
    assert_eq!(status_of(&state), BookingStatus::Completed);
    assert_eq!(state.reservations[0].ends_at, t(20));
}

#[test]
fn every_transition_outside_the_machine_is_refused() {
    use BookingStatus::*;
    let histories: Vec<(BookingStatus, Vec<BookingEvent>)> = vec![
        (Requested, requested()),
        (Confirmed, with(requested(), &[BookingEvent::Confirmed])),
        (
            InProgress,
            with(
                requested(),
                &[BookingEvent::Confirmed, BookingEvent::Started],
            ),
        ),
        (
            Completed,
            with(
                requested(),
                &[
                    BookingEvent::Confirmed,
                    BookingEvent::Started,
                    BookingEvent::Completed,
                ],
            ),
        ),
        (
            Cancelled,
            with(requested(), &[BookingEvent::Cancelled { reason: None }]),
        ),
    ];
    let allowed = |command: &BookingCommand, from: BookingStatus| match command {
        BookingCommand::Confirm => from == Requested,
        BookingCommand::Start => from == Confirmed,
        BookingCommand::Complete { .. } => from == InProgress,
        BookingCommand::Cancel { .. } => matches!(from, Requested | Confirmed),
        _ => unreachable!(),
    };
    for (status, history) in histories {
        for command in [
            BookingCommand::Confirm,
            BookingCommand::Start,
            BookingCommand::Complete { now: t(0) },
            BookingCommand::Cancel {
                reason: None,
                now: t(0),
            },
        ] {
            let outcome = Booking::from_events(history.iter()).decide(command.clone());
            if allowed(&command, status) {
                assert!(outcome.is_ok(), "{command:?} from {status:?}");
            } else {
                assert!(
                    matches!(outcome, Err(DomainError::InvalidTransition(_))),
                    "{command:?} from {status:?} gave {outcome:?}"
                );
            }
        }
    }
}

#[test]
fn commands_on_a_missing_booking_are_not_found() {
    for command in [
        BookingCommand::Confirm,
        BookingCommand::AddReservations(vec![reservation(1, 1, 2)]),
        BookingCommand::CompleteTask { task_id: id(1) },
    ] {
        assert_eq!(
            given::<Booking>([]).when(command).then_refused(),
            DomainError::NotFound("booking")
        );
    }
}

#[test]
fn cancel_releases_only_what_is_ahead() {
    let history = with(
        requested(),
        &[
            BookingEvent::ReservationAdded(reservation(2, 2, 4)),
            BookingEvent::ReservationAdded(reservation(3, 30, 40)),
        ],
    );
    // At 13:00: #1 (12–24) is under way, #2 (2–4) is over, #3 (30–40) is ahead.
    let state = given::<Booking>(history)
        .when(BookingCommand::Cancel {
            reason: Some("rain".into()),
            now: t(13),
        })
        .then([
            BookingEvent::Cancelled {
                reason: Some("rain".into()),
            },
            BookingEvent::ReservationReleased {
                reservation_id: id(1),
                released_from: t(13),
            },
            BookingEvent::ReservationReleased {
                reservation_id: id(3),
                released_from: t(30),
            },
        ]);
    let left: Vec<_> = state
        .reservations
        .iter()
        .map(|r| (r.reservation_id, r.ends_at))
        .collect();
    assert_eq!(left, [(id(1), t(13)), (id(2), t(4))]);
}

#[test]
fn add_reservation_validates_and_refuses_duplicates_and_closed_bookings() {
    given::<Booking>(requested())
        .when(BookingCommand::AddReservations(vec![reservation(5, 1, 3)]))
        .then([BookingEvent::ReservationAdded(reservation(5, 1, 3))]);
    given::<Booking>(requested())
        .when(BookingCommand::AddReservations(vec![reservation(5, 3, 1)]))
        .then_invalid(&["ends_at"]);
    assert_eq!(
        given::<Booking>(requested())
            .when(BookingCommand::AddReservations(vec![reservation(1, 1, 3)]))
            .then_refused(),
        DomainError::AlreadyExists("reservation")
    );
    let cancelled = with(requested(), &[BookingEvent::Cancelled { reason: None }]);
    assert!(matches!(
        given::<Booking>(cancelled)
            .when(BookingCommand::AddReservations(vec![reservation(5, 1, 3)]))
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn a_booking_holds_a_bounded_number_of_reservations() {
    let mut history = vec![BookingEvent::Requested(details())];
    history.extend(
        (0..MAX_RESERVATIONS as u128).map(|n| BookingEvent::ReservationAdded(reservation(n, 1, 2))),
    );
    given::<Booking>(history)
        .when(BookingCommand::AddReservations(vec![reservation(
            999, 1, 2,
        )]))
        .then_invalid(&["reservations"]);
}

#[test]
fn release_frees_a_future_reservation_whole_and_an_ongoing_one_from_now() {
    let future = given::<Booking>(requested())
        .when(BookingCommand::ReleaseReservation {
            reservation_id: id(1),
            now: t(1),
        })
        .then([BookingEvent::ReservationReleased {
            reservation_id: id(1),
            released_from: t(12),
        }]);
    assert!(future.reservations.is_empty());
    let ongoing = given::<Booking>(requested())
        .when(BookingCommand::ReleaseReservation {
            reservation_id: id(1),
            now: t(15),
        })
        .then([BookingEvent::ReservationReleased {
            reservation_id: id(1),
            released_from: t(15),
        }]);
    assert_eq!(ongoing.reservations[0].ends_at, t(15));
}

#[test]
fn release_of_an_unknown_released_or_past_reservation_is_refused() {
    assert_eq!(
        given::<Booking>(requested())
            .when(BookingCommand::ReleaseReservation {
                reservation_id: id(9),
                now: t(1)
            })
            .then_refused(),
        DomainError::UnknownChild("reservation")
    );
    let released = with(
        requested(),
        &[BookingEvent::ReservationReleased {
            reservation_id: id(1),
            released_from: t(12),
        }],
    );
    assert_eq!(
        given::<Booking>(released)
            .when(BookingCommand::ReleaseReservation {
                reservation_id: id(1),
                now: t(1)
            })
            .then_refused(),
        DomainError::UnknownChild("reservation")
    );
    assert!(matches!(
        given::<Booking>(requested())
            .when(BookingCommand::ReleaseReservation {
                reservation_id: id(1),
                now: t(30)
            })
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

fn task(n: u128) -> Task {
    Task {
        task_id: id(n),
        title: "Set up tables".into(),
        due_at: Some(t(13)),
        assignee_id: Some(id(77)),
    }
}

#[test]
fn tasks_are_added_and_completed_once() {
    let state = given::<Booking>(requested())
        .when(BookingCommand::AddTask(task(1)))
        .then([BookingEvent::TaskAdded(task(1))]);
    assert_eq!(state.tasks, [(task(1), false)]);
    let history = with(requested(), &[BookingEvent::TaskAdded(task(1))]);
    let state = given::<Booking>(history.clone())
        .when(BookingCommand::CompleteTask { task_id: id(1) })
        .then([BookingEvent::TaskCompleted { task_id: id(1) }]);
    assert!(state.tasks[0].1);
    let done = with(history, &[BookingEvent::TaskCompleted { task_id: id(1) }]);
    assert!(matches!(
        given::<Booking>(done)
            .when(BookingCommand::CompleteTask { task_id: id(1) })
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn task_rejections() {
    let mut untitled = task(2);
    untitled.title = " ".into();
    given::<Booking>(requested())
        .when(BookingCommand::AddTask(untitled))
        .then_invalid(&["title"]);
    let history = with(requested(), &[BookingEvent::TaskAdded(task(1))]);
    assert_eq!(
        given::<Booking>(history.clone())
            .when(BookingCommand::AddTask(task(1)))
            .then_refused(),
        DomainError::AlreadyExists("task")
    );
    assert_eq!(
        given::<Booking>(history.clone())
            .when(BookingCommand::CompleteTask { task_id: id(5) })
            .then_refused(),
        DomainError::UnknownChild("task")
    );
    let cancelled = with(history, &[BookingEvent::Cancelled { reason: None }]);
    assert!(matches!(
        given::<Booking>(cancelled.clone())
            .when(BookingCommand::AddTask(task(3)))
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
    assert!(matches!(
        given::<Booking>(cancelled)
            .when(BookingCommand::CompleteTask { task_id: id(1) })
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn cancel_reason_is_bounded() {
    given::<Booking>(requested())
        .when(BookingCommand::Cancel {
            reason: Some("x".repeat(MAX_NOTES + 1)),
            now: t(0),
        })
        .then_invalid(&["reason"]);
}

#[test]
fn events_round_trip_through_their_payloads() {
    let events = [
        BookingEvent::Requested(details()),
        BookingEvent::ReservationAdded(reservation(1, 1, 2)),
        BookingEvent::Confirmed,
        BookingEvent::Started,
        BookingEvent::Completed,
        BookingEvent::Cancelled {
            reason: Some("r".into()),
        },
        BookingEvent::ReservationReleased {
            reservation_id: id(1),
            released_from: t(3),
        },
        BookingEvent::TaskAdded(task(1)),
        BookingEvent::TaskCompleted { task_id: id(1) },
    ];
    for event in events {
        let back = BookingEvent::from_payload(event.event_type(), &event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn update_records_only_what_changes_and_nothing_is_a_no_op() {
    let state = given::<Booking>(requested())
        .when(BookingCommand::Update(BookingChanges {
            title: Some("  Smith & Jones wedding ".into()),
            headcount: Some(120),
            notes: Some("vegetarian menu".into()),
            client: None,
        }))
        .then([BookingEvent::Updated(BookingChanges {
            title: Some("Smith & Jones wedding".into()),
            notes: Some("vegetarian menu".into()),
            ..BookingChanges::default()
        })]);
    let details = state.details.as_ref().unwrap();
    assert_eq!(details.title, "Smith & Jones wedding");
    assert_eq!(details.notes.as_deref(), Some("vegetarian menu"));
    given::<Booking>(requested())
        .when(BookingCommand::Update(BookingChanges {
            title: Some("Smith wedding".into()),
            ..BookingChanges::default()
        }))
        .then([]);
    // An empty text clears the notes.
    let cleared = given::<Booking>(with(
        requested(),
        &[BookingEvent::Updated(BookingChanges {
            notes: Some("x".into()),
            ..BookingChanges::default()
        })],
    ))
    .when(BookingCommand::Update(BookingChanges {
        notes: Some(String::new()),
        ..BookingChanges::default()
    }))
    .then([BookingEvent::Updated(BookingChanges {
        notes: Some(String::new()),
        ..BookingChanges::default()
    })]);
    assert_eq!(cleared.details.unwrap().notes, None);
}

#[test]
fn update_validates_and_is_refused_once_the_booking_is_over() {
    given::<Booking>(requested())
        .when(BookingCommand::Update(BookingChanges {
            title: Some(String::new()),
            client: Some(Client {
                name: "Ann".into(),
                email: Some("nope".into()),
                phone: None,
                erased: false,
            }),
            headcount: Some(MAX_HEADCOUNT + 1),
            notes: None,
        }))
        .then_invalid(&["title", "client.email", "headcount"]);
    let cancelled = with(requested(), &[BookingEvent::Cancelled { reason: None }]);
    assert!(matches!(
        given::<Booking>(cancelled)
            .when(BookingCommand::Update(BookingChanges {
                headcount: Some(3),
                ..BookingChanges::default()
            }))
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

fn reschedule(starts_at: i64, ends_at: i64) -> BookingCommand {
    BookingCommand::Reschedule {
        starts_at: t(starts_at),
        ends_at: t(ends_at),
        reservations: Vec::new(),
        repicked: Vec::new(),
        now: t(0),
    }
}

#[test]
fn reschedule_moves_every_current_reservation_edge_by_edge() {
    // The booking is 14:00-23:00; reservation 1 covers it with two hours
    // of set-up and one of clean-up, reservation 2 is 14:00-16:00.
    let history = with(
        requested(),
        &[BookingEvent::ReservationAdded(reservation(2, 14, 16))],
    );
    let state = given::<Booking>(history)
        .when(reschedule(14 + 24, 22 + 24))
        .then([
            BookingEvent::Rescheduled {
                starts_at: t(38),
                ends_at: t(46),
            },
            // Margins kept: two hours before the start, one after the end.
            BookingEvent::ReservationMoved(reservation(1, 36, 47)),
            // Inside: its offsets from the start.
            BookingEvent::ReservationMoved(reservation(2, 38, 40)),
        ]);
    let details = state.details.as_ref().unwrap();
    assert_eq!((details.starts_at, details.ends_at), (t(38), t(46)));
    assert_eq!(
        state.reservations[0].range(),
        reservation(1, 36, 47).range()
    );
    // The same times again: nothing happens.
    given::<Booking>(requested())
        .when(reschedule(14, 23))
        .then([]);
}

#[test]
fn a_shorter_booking_takes_its_covering_reservations_with_it() {
    // SPEC §2: 14:00-18:00 moved to 09:00-11:00 holds the hall 09:00-11:00,
    // not 09:00-13:00.
    let history = vec![
        BookingEvent::Requested(BookingDetails {
            starts_at: t(14),
            ends_at: t(18),
            ..details()
        }),
        BookingEvent::ReservationAdded(reservation(1, 14, 18)),
    ];
    given::<Booking>(history.clone())
        .when(reschedule(9, 11))
        .then([
            BookingEvent::Rescheduled {
                starts_at: t(9),
                ends_at: t(11),
            },
            BookingEvent::ReservationMoved(reservation(1, 9, 11)),
        ]);
    // Longer: it still covers the booking.
    given::<Booking>(history).when(reschedule(9, 15)).then([
        BookingEvent::Rescheduled {
            starts_at: t(9),
            ends_at: t(15),
        },
        BookingEvent::ReservationMoved(reservation(1, 9, 15)),
    ]);
}

#[test]
fn a_reschedule_that_would_empty_a_reservation_names_it_unless_its_range_is_given() {
    // Reservation 2 is the booking's last two hours (21:00-23:00 of
    // 14:00-23:00); shortened to 14:00-15:00 it would start after its end.
    let history = with(
        requested(),
        &[BookingEvent::ReservationAdded(reservation(2, 21, 23))],
    );
    given::<Booking>(history.clone())
        .when(reschedule(14, 15))
        .then_invalid(&["reservations"]);
    given::<Booking>(history.clone())
        .when(BookingCommand::Reschedule {
            starts_at: t(14),
            ends_at: t(15),
            reservations: vec![ReservationRange {
                reservation_id: id(2),
                range: reservation(2, 14, 15).range(),
            }],
            repicked: Vec::new(),
            now: t(0),
        })
        .then([
            BookingEvent::Rescheduled {
                starts_at: t(14),
                ends_at: t(15),
            },
            BookingEvent::ReservationMoved(reservation(1, 12, 16)),
            BookingEvent::ReservationMoved(reservation(2, 14, 15)),
        ]);
    // A given range must name one of the booking's reservations, once.
    given::<Booking>(history)
        .when(BookingCommand::Reschedule {
            starts_at: t(14),
            ends_at: t(22),
            reservations: vec![
                ReservationRange {
                    reservation_id: id(9),
                    range: reservation(9, 14, 15).range(),
                },
                ReservationRange {
                    reservation_id: id(1),
                    range: reservation(1, 14, 15).range(),
                },
                ReservationRange {
                    reservation_id: id(1),
                    range: reservation(1, 14, 16).range(),
                },
            ],
            repicked: Vec::new(),
            now: t(0),
        })
        .then_invalid(&[
            "reservations[0].reservation_id",
            "reservations[2].reservation_id",
        ]);
}

#[test]
fn edges_follow_the_start_or_the_end() {
    let from = TimeRange {
        starts_at: t(14),
        ends_at: t(18),
    };
    let to = TimeRange {
        starts_at: t(9),
        ends_at: t(12),
    };
    assert_eq!(follow_edge(t(13), from, to), t(8));
    assert_eq!(follow_edge(t(14), from, to), t(9));
    assert_eq!(follow_edge(t(15), from, to), t(10));
    assert_eq!(follow_edge(t(18), from, to), t(12));
    assert_eq!(follow_edge(t(19), from, to), t(13));
}

#[test]
fn reschedule_is_for_requested_or_confirmed_bookings_with_a_valid_range() {
    given::<Booking>(requested())
        .when(reschedule(5, 5))
        .then_invalid(&["ends_at"]);
    let started = with(
        requested(),
        &[BookingEvent::Confirmed, BookingEvent::Started],
    );
    assert!(matches!(
        given::<Booking>(started)
            .when(reschedule(30, 40))
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn a_reservation_moves_to_another_resource_or_time_keeping_its_id() {
    let elsewhere = id(999);
    given::<Booking>(requested())
        .when(BookingCommand::MoveReservation {
            reservation_id: id(1),
            to: ReservationTarget {
                resource_id: Some(elsewhere),
                starts_at: Some(t(13)),
                ends_at: None,
                outside_working_hours: None,
            },
            now: t(0),
        })
        .then([BookingEvent::ReservationMoved(Reservation {
            resource_id: elsewhere,
            starts_at: t(13),
            ..reservation(1, 12, 24)
        })]);
    // Moving nowhere is a no-op; an unknown reservation is not found; an
    // end before the start is invalid; a reservation already over stays.
    given::<Booking>(requested())
        .when(BookingCommand::MoveReservation {
            reservation_id: id(1),
            to: ReservationTarget::default(),
            now: t(0),
        })
        .then([]);
    assert_eq!(
        given::<Booking>(requested())
            .when(BookingCommand::MoveReservation {
                reservation_id: id(7),
                to: ReservationTarget::default(),
                now: t(0),
            })
            .then_refused(),
        DomainError::UnknownChild("reservation")
    );
    given::<Booking>(requested())
        .when(BookingCommand::MoveReservation {
            reservation_id: id(1),
            to: ReservationTarget {
                ends_at: Some(t(11)),
                ..ReservationTarget::default()
            },
            now: t(0),
        })
        .then_invalid(&["ends_at"]);
    assert!(matches!(
        given::<Booking>(requested())
            .when(BookingCommand::MoveReservation {
                reservation_id: id(1),
                to: ReservationTarget {
                    starts_at: Some(t(30)),
                    ends_at: Some(t(31)),
                    ..ReservationTarget::default()
                },
                now: t(25),
            })
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn change_and_move_events_survive_their_payloads() {
    for event in [
        BookingEvent::Updated(BookingChanges {
            headcount: Some(4),
            ..BookingChanges::default()
        }),
        BookingEvent::Rescheduled {
            starts_at: t(1),
            ends_at: t(2),
        },
        BookingEvent::ReservationMoved(reservation(3, 1, 2)),
    ] {
        let back = BookingEvent::from_payload(event.event_type(), &event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn a_reschedule_takes_pool_reservations_to_the_members_repicked_and_no_others() {
    let mut pooled = reservation(2, 14, 16);
    pooled.pool_id = Some(id(7));
    let history = vec![
        BookingEvent::Requested(details()),
        BookingEvent::ReservationAdded(pooled.clone()),
        BookingEvent::ReservationAdded(reservation(3, 14, 16)),
    ];
    let other = id(8);
    let repick = |reservation_id| BookingCommand::Reschedule {
        starts_at: t(15),
        ends_at: t(24),
        reservations: Vec::new(),
        repicked: vec![Repicked {
            reservation_id,
            resource_id: other,
        }],
        now: t(0),
    };
    given::<Booking>(history.clone()).when(repick(id(2))).then([
        BookingEvent::Rescheduled {
            starts_at: t(15),
            ends_at: t(24),
        },
        BookingEvent::ReservationMoved(Reservation {
            resource_id: other,
            starts_at: t(15),
            ends_at: t(17),
            ..pooled
        }),
        BookingEvent::ReservationMoved(reservation(3, 15, 17)),
    ]);
    // Only a pool's reservation changes member.
    given::<Booking>(history)
        .when(repick(id(3)))
        .then_invalid(&["repicked[0]"]);
}

#[test]
fn check_in_opens_an_hour_before_the_start_and_closes_at_the_end() {
    let early = given::<Booking>(requested())
        .when(BookingCommand::CheckIn {
            now: t(14) - Duration::minutes(61),
        })
        .then_refused();
    assert!(matches!(early, DomainError::InvalidTransition(m) if m.contains("opens at")));
    let state = given::<Booking>(with(requested(), &[BookingEvent::Confirmed]))
        .when(BookingCommand::CheckIn { now: t(13) })
        .then([BookingEvent::CheckedIn { at: t(13) }]);
    assert_eq!(state.checked_in_at, Some(t(13)));
    given::<Booking>(with(requested(), &[BookingEvent::CheckedIn { at: t(13) }]))
        .when(BookingCommand::CheckIn { now: t(14) })
        .then_refused();
    given::<Booking>(requested())
        .when(BookingCommand::CheckIn { now: t(23) })
        .then_refused();
}

#[test]
fn a_no_show_ends_the_booking_and_releases_it_from_the_deadline() {
    let state = given::<Booking>(requested())
        .when(BookingCommand::RecordNoShow {
            deadline: t(14) + Duration::minutes(15),
            now: t(15),
        })
        .then([
            BookingEvent::NoShow {
                deadline: t(14) + Duration::minutes(15),
            },
            BookingEvent::ReservationReleased {
                reservation_id: id(1),
                released_from: t(14) + Duration::minutes(15),
            },
        ]);
    assert!(state.no_show);
    assert_eq!(status_of(&state), BookingStatus::Cancelled);
    assert_eq!(
        state.charge(),
        None,
        "a no-show no longer counts for quotas"
    );
    // Checked in, or not yet due: no no-show.
    given::<Booking>(with(requested(), &[BookingEvent::CheckedIn { at: t(14) }]))
        .when(BookingCommand::RecordNoShow {
            deadline: t(15),
            now: t(16),
        })
        .then_refused();
    given::<Booking>(requested())
        .when(BookingCommand::RecordNoShow {
            deadline: t(15),
            now: t(14),
        })
        .then_refused();
}

#[test]
fn only_a_request_expires() {
    let state = given::<Booking>(requested())
        .when(BookingCommand::Expire { now: t(2) })
        .then([
            BookingEvent::Expired,
            BookingEvent::ReservationReleased {
                reservation_id: id(1),
                released_from: t(12),
            },
        ]);
    assert_eq!(status_of(&state), BookingStatus::Cancelled);
    assert!(!state.no_show);
    given::<Booking>(with(requested(), &[BookingEvent::Confirmed]))
        .when(BookingCommand::Expire { now: t(2) })
        .then_refused();
}

#[test]
fn the_new_events_round_trip_through_their_payloads() {
    for event in [
        BookingEvent::CheckedIn { at: t(13) },
        BookingEvent::NoShow { deadline: t(14) },
        BookingEvent::Expired,
    ] {
        let payload = event.to_payload();
        assert_eq!(
            BookingEvent::from_payload(event.event_type(), &payload).unwrap(),
            event
        );
    }
}
