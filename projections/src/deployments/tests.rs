//! The deployments fold, without a database.

use muster_domain::Aggregate;
use muster_domain::deployment::{Deployment, DeploymentEvent, DeploymentPlan, StepOutcome};
use uuid::Uuid;

use super::{DeploymentDocument, FoldedDeployment, StepAttempt, StepView};
use crate::ProjectionError;
use crate::fold::fold;
use crate::fold::testing::{at, recorded};

const ID: Uuid = Uuid::from_u128(42);
const BOOKING: Uuid = Uuid::from_u128(7);
const HALL: Uuid = Uuid::from_u128(1);

fn dispatch() -> String {
    format!("dispatch:{HALL}")
}

fn requested() -> DeploymentEvent {
    DeploymentEvent::Requested(DeploymentPlan {
        booking_id: BOOKING,
        priority: 5,
        steps: muster_domain::deployment::plan_steps(&[muster_domain::booking::Reservation {
            reservation_id: Uuid::from_u128(1001),
            resource_id: HALL,
            starts_at: at(1000),
            ends_at: at(1100),
            label: Some("hall".into()),
            outside_working_hours: false,
            hold_id: None,
            pool_id: None,
        }]),
    })
}

fn outcome(step: &str, attempt: u32, error: Option<&str>) -> StepOutcome {
    StepOutcome {
        step: step.to_owned(),
        attempt,
        error: error.map(str::to_owned),
    }
}

/// Folds `events` (versions from 1) in one go.
fn folded(events: &[DeploymentEvent]) -> Result<FoldedDeployment, ProjectionError> {
    folded_from(None, 1, events)
}

fn folded_from(
    mut folded: Option<FoldedDeployment>,
    first_version: i32,
    events: &[DeploymentEvent],
) -> Result<FoldedDeployment, ProjectionError> {
    for (version, event) in (first_version..).zip(events) {
        let envelope = recorded(Deployment::STREAM_TYPE, ID, version, event);
        folded = Some(fold(folded, &envelope, event)?);
    }
    folded.ok_or_else(|| unreachable!("no events"))
}

fn document(events: &[DeploymentEvent]) -> DeploymentDocument {
    folded(events).unwrap().document().unwrap()
}

fn pending(name: String, resource_id: Option<Uuid>, label: Option<&str>) -> StepView {
    StepView {
        name,
        resource_id,
        label: label.map(str::to_owned),
        status: "pending".into(),
        attempts: Vec::new(),
    }
}

#[test]
fn a_requested_deployment_is_queued_with_pending_steps() {
    assert_eq!(
        document(&[requested()]),
        DeploymentDocument {
            id: ID,
            booking_id: BOOKING,
            status: "queued".into(),
            priority: 5,
            progress: 0.0,
            steps_done: 0,
            steps_total: 2,
            steps: vec![
                pending(dispatch(), Some(HALL), Some("hall")),
                pending("notify".into(), None, None),
            ],
            error: None,
            version: 1,
            position: 101,
            requested_at: at(1),
            started_at: None,
            finished_at: None,
            updated_at: at(1),
        }
    );
}

#[test]
fn a_run_shows_every_attempt_and_transition() {
    let events = [
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepFailed(outcome(&dispatch(), 1, Some("503"))),
        DeploymentEvent::StepSucceeded(outcome(&dispatch(), 2, None)),
        DeploymentEvent::StepSucceeded(outcome("notify", 1, None)),
        DeploymentEvent::Succeeded,
    ];

    let started = document(&events[..2]);
    assert_eq!(started.status, "running");
    assert_eq!(started.started_at, Some(at(2)));
    assert_eq!(started.finished_at, None);

    let failed_once = document(&events[..3]);
    assert_eq!(failed_once.status, "running");
    assert_eq!(failed_once.steps[0].status, "failed");
    assert_eq!(failed_once.steps_done, 0);

    let doc = document(&events);
    assert_eq!(doc.status, "succeeded");
    assert_eq!((doc.steps_done, doc.steps_total, doc.progress), (2, 2, 1.0));
    assert_eq!(doc.started_at, Some(at(2)));
    assert_eq!(doc.finished_at, Some(at(6)));
    assert_eq!((doc.version, doc.position, doc.updated_at), (6, 106, at(6)));
    assert_eq!(
        doc.steps,
        [
            StepView {
                status: "succeeded".into(),
                attempts: vec![
                    StepAttempt {
                        attempt: 1,
                        succeeded: false,
                        error: Some("503".into()),
                        at: at(3),
                    },
                    StepAttempt {
                        attempt: 2,
                        succeeded: true,
                        error: None,
                        at: at(4),
                    },
                ],
                ..pending(dispatch(), Some(HALL), Some("hall"))
            },
            StepView {
                status: "succeeded".into(),
                attempts: vec![StepAttempt {
                    attempt: 1,
                    succeeded: true,
                    error: None,
                    at: at(5),
                }],
                ..pending("notify".into(), None, None)
            },
        ]
    );
}

#[test]
fn half_way_shows_progress() {
    let doc = document(&[
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepSucceeded(outcome(&dispatch(), 1, None)),
    ]);
    assert_eq!((doc.steps_done, doc.progress), (1, 0.5));
    assert_eq!(
        [doc.steps[0].status.as_str(), doc.steps[1].status.as_str()],
        ["succeeded", "pending"]
    );
}

#[test]
fn a_failure_shows_its_error_and_end() {
    let doc = document(&[
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepFailed(outcome(&dispatch(), 1, Some("timeout"))),
        DeploymentEvent::Failed {
            error: "gave up".into(),
        },
    ]);
    assert_eq!(doc.status, "failed");
    assert_eq!(doc.error.as_deref(), Some("gave up"));
    assert_eq!(doc.finished_at, Some(at(4)));
    assert_eq!(doc.steps[0].status, "failed");
    assert_eq!(doc.steps[0].attempts[0].error.as_deref(), Some("timeout"));

    // Failing a queued deployment never started it.
    let doc = document(&[
        requested(),
        DeploymentEvent::Failed {
            error: "no worker".into(),
        },
    ]);
    assert_eq!(
        (doc.status.as_str(), doc.started_at, doc.finished_at),
        ("failed", None, Some(at(2)))
    );
}

#[test]
fn a_cancel_ends_it_and_the_step_in_flight_still_shows() {
    let doc = document(&[
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::Cancelled,
        DeploymentEvent::StepSucceeded(outcome(&dispatch(), 1, None)),
    ]);
    assert_eq!(doc.status, "cancelled");
    assert_eq!(doc.finished_at, Some(at(3)));
    assert_eq!(doc.updated_at, at(4));
    assert_eq!(doc.steps[0].status, "succeeded");
    assert_eq!(doc.steps[0].attempts[0].at, at(4));
    assert_eq!(doc.steps_done, 1);

    let queued = document(&[requested(), DeploymentEvent::Cancelled]);
    assert_eq!(
        (
            queued.status.as_str(),
            queued.started_at,
            queued.finished_at
        ),
        ("cancelled", None, Some(at(2)))
    );
}

#[test]
fn an_outcome_of_an_unknown_step_changes_nothing_but_the_version() {
    let before = document(&[requested(), DeploymentEvent::Started]);
    let after = document(&[
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepFailed(outcome("elsewhere", 1, Some("?"))),
    ]);
    assert_eq!(after.steps, before.steps);
    assert_eq!(after.version, 3);
}

#[test]
fn a_repeat_or_a_gap_is_poison() {
    let doc = folded(&[requested(), DeploymentEvent::Started]).unwrap();
    let repeat = recorded(Deployment::STREAM_TYPE, ID, 2, &DeploymentEvent::Cancelled);
    let gap = recorded(Deployment::STREAM_TYPE, ID, 4, &DeploymentEvent::Cancelled);
    for event in [repeat, gap] {
        let e = fold(Some(doc.clone()), &event, &DeploymentEvent::Cancelled).unwrap_err();
        assert!(matches!(e, ProjectionError::Poison { .. }), "{e:?}");
    }
    // A stream seen for the first time starts at version 1.
    let late = recorded(Deployment::STREAM_TYPE, ID, 2, &requested());
    assert!(matches!(
        fold::<Deployment, _>(None::<FoldedDeployment>, &late, &requested()),
        Err(ProjectionError::Poison { .. })
    ));
}

#[test]
fn a_stream_must_begin_with_its_request() {
    let e = folded(&[DeploymentEvent::Started]).unwrap_err();
    assert!(
        e.to_string().contains("the deployment was never requested"),
        "{e}"
    );
}

/// A batch boundary loads the stored document: folding on from it must
/// give what one long batch gives, wherever the boundary falls.
#[test]
fn folding_on_from_a_stored_document_is_folding_straight_through() {
    let events = [
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepFailed(outcome(&dispatch(), 1, Some("503"))),
        DeploymentEvent::StepFailed(outcome(&dispatch(), 2, Some("504"))),
        DeploymentEvent::StepSucceeded(outcome(&dispatch(), 3, None)),
        DeploymentEvent::Cancelled,
        DeploymentEvent::StepFailed(outcome("notify", 1, Some("smtp"))),
    ];
    let straight = folded(&events).unwrap();
    for split in 1..events.len() {
        let stored = folded(&events[..split]).unwrap().document().unwrap();
        let json = serde_json::to_value(&stored).unwrap();
        let loaded = FoldedDeployment::from_document(serde_json::from_value(json).unwrap());
        let on = folded_from(Some(loaded.unwrap()), split as i32 + 1, &events[split..]);
        assert_eq!(on.unwrap().document(), straight.document(), "split {split}");
    }
    // The state reloaded is the domain's own state of the same history.
    let reloaded = FoldedDeployment::from_document(straight.document().unwrap()).unwrap();
    assert_eq!(reloaded.state, Deployment::from_events(&events));
    assert_eq!(reloaded, straight);
}

#[test]
fn the_document_keeps_its_wire_shape() {
    let doc = document(&[
        requested(),
        DeploymentEvent::Started,
        DeploymentEvent::StepFailed(outcome(&dispatch(), 1, Some("503"))),
    ]);
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": ID, "booking_id": BOOKING, "status": "running", "priority": 5,
            "progress": 0.0, "steps_done": 0, "steps_total": 2,
            "steps": [
                {"name": dispatch(), "resource_id": HALL, "label": "hall", "status": "failed",
                 "attempts": [{"attempt": 1, "succeeded": false, "error": "503", "at": at(3)}]},
                {"name": "notify", "status": "pending", "attempts": []},
            ],
            "version": 3, "position": 103, "requested_at": at(1), "started_at": at(2),
            "updated_at": at(3),
        })
    );
}
