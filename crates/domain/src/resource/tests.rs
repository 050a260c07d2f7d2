use super::*;
use crate::aggregate::harness::given;
use crate::working_hours::{TimeOfDay, Weekday};

fn hall() -> ResourceProfile {
    ResourceProfile {
        name: "Hall A".into(),
        kind: "room".into(),
        capacity: 1,
        timezone: "Europe/Berlin".into(),
        working_hours: vec![WorkingWindow {
            weekday: Weekday::Mon,
            start: "08:00".parse::<TimeOfDay>().unwrap(),
            end: "18:00".parse().unwrap(),
        }],
        tags: vec!["ground-floor".into()],
        seats: None,
        policy: Default::default(),
    }
}

fn registered() -> Vec<ResourceEvent> {
    vec![ResourceEvent::Registered(hall())]
}

#[test]
fn register_records_the_normalised_profile() {
    let mut input = hall();
    input.name = "  Hall A ".into();
    input.tags = vec!["x".into(), " x".into(), "y".into()];
    let mut expected = hall();
    expected.tags = vec!["x".into(), "y".into()];
    let state = given::<Resource>([])
        .when(ResourceCommand::Register(input))
        .then([ResourceEvent::Registered(expected.clone())]);
    assert_eq!(state.profile, Some(expected));
}

#[test]
fn register_twice_is_refused() {
    let err = given::<Resource>(registered())
        .when(ResourceCommand::Register(hall()))
        .then_refused();
    assert_eq!(err, DomainError::AlreadyExists("resource"));
}

#[test]
fn register_reports_every_invalid_field() {
    let mut bad = hall();
    bad.name = " ".into();
    bad.kind = String::new();
    bad.capacity = 0;
    bad.timezone = "Mars/Olympus".into();
    bad.tags = vec![String::new()];
    bad.working_hours[0].end = "07:00".parse().unwrap();
    given::<Resource>([])
        .when(ResourceCommand::Register(bad))
        .then_invalid(&[
            "name",
            "kind",
            "capacity",
            "timezone",
            "tags[0]",
            "working_hours[0].end",
        ]);
}

#[test]
fn capacity_above_the_limit_is_refused() {
    let mut bad = hall();
    bad.capacity = MAX_CAPACITY + 1;
    given::<Resource>([])
        .when(ResourceCommand::Register(bad))
        .then_invalid(&["capacity"]);
}

#[test]
fn update_records_only_what_changes() {
    let changes = ResourceChanges {
        name: Some("Hall A".into()),
        capacity: Some(3),
        ..Default::default()
    };
    let state = given::<Resource>(registered())
        .when(ResourceCommand::Update(changes))
        .then([ResourceEvent::Updated(ResourceChanges {
            capacity: Some(3),
            ..Default::default()
        })]);
    assert_eq!(state.profile.unwrap().capacity, 3);
}

#[test]
fn update_that_changes_nothing_records_nothing() {
    given::<Resource>(registered())
        .when(ResourceCommand::Update(ResourceChanges {
            tags: Some(vec!["ground-floor".into()]),
            ..Default::default()
        }))
        .then([]);
}

#[test]
fn update_of_working_hours_and_tags_is_applied() {
    let state = given::<Resource>(registered())
        .when(ResourceCommand::Update(ResourceChanges {
            tags: Some(vec!["new".into()]),
            working_hours: Some(vec![]),
            ..Default::default()
        }))
        .then([ResourceEvent::Updated(ResourceChanges {
            tags: Some(vec!["new".into()]),
            working_hours: Some(vec![]),
            ..Default::default()
        })]);
    let profile = state.profile.unwrap();
    assert!(profile.working_hours.is_empty());
    assert_eq!(profile.tags, ["new"]);
}

#[test]
fn an_empty_update_changes_nothing_and_an_invalid_one_is_refused() {
    given::<Resource>(registered())
        .when(ResourceCommand::Update(ResourceChanges::default()))
        .then([]);
    given::<Resource>(registered())
        .when(ResourceCommand::Update(ResourceChanges {
            capacity: Some(0),
            name: Some(String::new()),
            ..Default::default()
        }))
        .then_invalid(&["name", "capacity"]);
}

#[test]
fn update_of_unknown_or_retired_resource_is_refused() {
    let update = || {
        ResourceCommand::Update(ResourceChanges {
            capacity: Some(2),
            ..Default::default()
        })
    };
    assert_eq!(
        given::<Resource>([]).when(update()).then_refused(),
        DomainError::NotFound("resource")
    );
    let mut history = registered();
    history.push(ResourceEvent::Retired);
    assert!(matches!(
        given::<Resource>(history).when(update()).then_refused(),
        DomainError::InvalidTransition(_)
    ));
}

#[test]
fn retire_once_then_never_again() {
    let state = given::<Resource>(registered())
        .when(ResourceCommand::Retire)
        .then([ResourceEvent::Retired]);
    assert!(state.retired);
    let mut history = registered();
    history.push(ResourceEvent::Retired);
    assert!(matches!(
        given::<Resource>(history)
            .when(ResourceCommand::Retire)
            .then_refused(),
        DomainError::InvalidTransition(_)
    ));
    assert_eq!(
        given::<Resource>([])
            .when(ResourceCommand::Retire)
            .then_refused(),
        DomainError::NotFound("resource")
    );
}

#[test]
fn events_round_trip_through_their_payloads() {
    let events = [
        ResourceEvent::Registered(hall()),
        ResourceEvent::Updated(ResourceChanges {
            capacity: Some(4),
            ..Default::default()
        }),
        ResourceEvent::Retired,
    ];
    for event in events {
        let back = ResourceEvent::from_payload(event.event_type(), &event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}
