//! The resources fold, without a database.

use muster_domain::resource::{Resource, ResourceChanges, ResourceEvent, ResourceProfile};
use muster_domain::{Aggregate, TenantId};
use uuid::Uuid;

use super::{FoldedResource, ResourceRow};
use crate::ProjectionError;
use crate::fold::testing::{at, recorded};
use crate::fold::{Key, fold};

const ID: Uuid = Uuid::from_u128(42);

fn key() -> Key {
    (TenantId::try_from("acme".to_owned()).unwrap(), ID)
}

fn registered() -> ResourceEvent {
    ResourceEvent::Registered(ResourceProfile {
        name: "Hall".into(),
        kind: "room".into(),
        capacity: 1,
        timezone: "Europe/London".into(),
        working_hours: Vec::new(),
        tags: vec!["ground-floor".into()],
        seats: None,
        policy: Default::default(),
    })
}

fn life() -> Vec<ResourceEvent> {
    vec![
        registered(),
        ResourceEvent::Updated(ResourceChanges {
            name: Some("Great hall".into()),
            capacity: Some(2),
            ..ResourceChanges::default()
        }),
        ResourceEvent::Retired,
    ]
}

fn folded_from(
    mut folded: Option<FoldedResource>,
    first_version: i32,
    events: &[ResourceEvent],
) -> Result<FoldedResource, ProjectionError> {
    for (version, event) in (first_version..).zip(events) {
        let envelope = recorded(Resource::STREAM_TYPE, ID, version, event);
        folded = Some(fold(folded, &envelope, event)?);
    }
    folded.ok_or_else(|| unreachable!("no events"))
}

fn row(events: &[ResourceEvent]) -> serde_json::Value {
    let folded = folded_from(None, 1, events).unwrap();
    serde_json::to_value(folded.row(&key()).unwrap()).unwrap()
}

#[test]
fn a_life_gives_the_row_the_domain_state_shows() {
    assert_eq!(
        row(&life()[..1]),
        serde_json::json!({
            "tenant_id": "acme", "resource_id": ID, "version": 1,
            "registered_at": at(1), "updated_at": at(1), "position": 101, "retired": false,
            "name": "Hall", "kind": "room", "capacity": 1, "timezone": "Europe/London",
            "working_hours": [], "tags": ["ground-floor"],
        })
    );
    assert_eq!(
        row(&life()),
        serde_json::json!({
            "tenant_id": "acme", "resource_id": ID, "version": 3,
            "registered_at": at(1), "updated_at": at(3), "position": 103, "retired": true,
            "name": "Great hall", "kind": "room", "capacity": 2,
            "timezone": "Europe/London", "working_hours": [], "tags": ["ground-floor"],
        })
    );
}

#[test]
fn a_repeat_or_a_gap_is_poison() {
    let resource = folded_from(None, 1, &life()[..2]).unwrap();
    for version in [2, 4] {
        let event = recorded(Resource::STREAM_TYPE, ID, version, &ResourceEvent::Retired);
        let e = fold(Some(resource.clone()), &event, &ResourceEvent::Retired).unwrap_err();
        assert!(matches!(e, ProjectionError::Poison { .. }), "{e:?}");
    }
}

#[test]
fn a_stream_must_begin_with_its_registration() {
    let e = folded_from(None, 1, &[ResourceEvent::Retired]).unwrap_err();
    assert!(
        e.to_string().contains("the resource is not registered"),
        "{e}"
    );
}

#[test]
fn folding_on_from_a_stored_row_is_folding_straight_through() {
    let events = life();
    let straight = folded_from(None, 1, &events).unwrap();
    for split in 1..events.len() {
        let stored = folded_from(None, 1, &events[..split]).unwrap();
        let json = serde_json::to_value(stored.row(&key()).unwrap()).unwrap();
        let loaded = FoldedResource::from_row(serde_json::from_value::<ResourceRow>(json).unwrap());
        let on = folded_from(Some(loaded), split as i32 + 1, &events[split..]).unwrap();
        assert_eq!(on, straight, "split {split}");
    }
    assert_eq!(straight.state, Resource::from_events(&events));
}
