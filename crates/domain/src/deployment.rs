//! The Deployment aggregate: dispatching a confirmed booking's resources to
//! it, one step per reservation and a final notify step, with the status
//! machine `queued → running → succeeded | failed | cancelled`.
//!
//! A worker drives it: it records each step's outcome here, so that a step
//! that succeeded is never run again, also by another worker after a crash.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::booking::{BookingStatus, Reservation};
use crate::event::{EventDecodeError, decode, payload_of};
use crate::{Aggregate, DomainError, DomainEvent};

/// Highest priority a deployment may ask for (workers take higher first).
pub const MAX_PRIORITY: u8 = 10;
/// Priority when none is given.
pub const DEFAULT_PRIORITY: u8 = 5;
const MAX_ERROR: usize = 2_000;

/// One step of a deployment's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlan {
    /// Stable name within the deployment (`dispatch:<resource id>`, `notify`);
    /// with the deployment id it is the step's idempotency key.
    pub name: String,
    /// The resource this step dispatches (none for `notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<Uuid>,
    /// The reservation's label, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Payload of `deployment.requested`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// The booking being served.
    pub booking_id: Uuid,
    /// Higher runs first.
    pub priority: u8,
    /// The steps, in order.
    pub steps: Vec<StepPlan>,
}

/// Payload of the step events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The step's name.
    pub step: String,
    /// Which attempt of this step it was (1-based).
    pub attempt: u32,
    /// Why it failed (`deployment.step_failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker runs its steps.
    Running,
    /// Every step succeeded (terminal).
    Succeeded,
    /// A step failed for good (terminal).
    Failed,
    /// Called off (terminal).
    Cancelled,
}

impl DeploymentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Queued => "queued",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Cancelled
        )
    }
}

/// Commands on a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentCommand {
    /// Plans a deployment for a booking, given the booking's current state
    /// (read from its stream in the same transaction).
    Request {
        /// The booking.
        booking_id: Uuid,
        /// Its status, `None` if it does not exist.
        booking_status: Option<BookingStatus>,
        /// Its reservations.
        reservations: Vec<Reservation>,
        /// Requested priority.
        priority: u8,
    },
    /// A worker starts (or resumes) it.
    Start,
    /// A step ended.
    RecordStep {
        /// The step.
        step: String,
        /// `Err(reason)` when it failed.
        result: Result<(), String>,
    },
    /// Every step is done.
    Succeed,
    /// A step failed for good.
    Fail {
        /// Why.
        error: String,
    },
    /// Stop before the next step.
    Cancel,
    /// Resume a failed deployment at its first unfinished step, with a
    /// fresh attempt budget for the steps still to do (a step that
    /// succeeded is never redone).
    Retry,
}

/// Events of a deployment's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// `deployment.requested`
    Requested(DeploymentPlan),
    /// `deployment.started`
    Started,
    /// `deployment.step_succeeded`
    StepSucceeded(StepOutcome),
    /// `deployment.step_failed`
    StepFailed(StepOutcome),
    /// `deployment.succeeded`
    Succeeded,
    /// `deployment.failed`
    Failed {
        /// Why.
        error: String,
    },
    /// `deployment.cancelled`
    Cancelled,
    /// `deployment.retried`: queued again after failing.
    Retried,
}

/// A step's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    /// Its plan.
    pub plan: StepPlan,
    /// Whether it succeeded.
    pub done: bool,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts made before the last retry: the budget counts from here.
    pub attempts_before_retry: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl StepState {
    /// Attempts since the deployment was last (re)queued: what the attempt
    /// budget is measured against.
    pub fn attempts_in_budget(&self) -> u32 {
        self.attempts.saturating_sub(self.attempts_before_retry)
    }
}

/// A deployment's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// The booking, once requested.
    pub booking_id: Option<Uuid>,
    /// Its priority.
    pub priority: u8,
    /// Current status (meaningful once requested).
    pub status: Option<DeploymentStatus>,
    /// Steps in order.
    pub steps: Vec<StepState>,
    /// Why it failed.
    pub error: Option<String>,
    /// How many times it was retried.
    pub retries: u32,
}

impl Deployment {
    /// Steps done and steps in all.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.steps.iter().filter(|s| s.done).count(),
            self.steps.len(),
        )
    }

    /// The first step not yet done.
    pub fn next_step(&self) -> Option<&StepState> {
        self.steps.iter().find(|s| !s.done)
    }

    fn step_mut(&mut self, name: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.plan.name == name)
    }
}

/// The plan for a booking's reservations: one dispatch step per reserved
/// resource (in reservation order, each resource once), then `notify`.
pub fn plan_steps(reservations: &[Reservation]) -> Vec<StepPlan> {
    let mut steps: Vec<StepPlan> = Vec::with_capacity(reservations.len() + 1);
    for r in reservations {
        let name = format!("dispatch:{}", r.resource_id);
        if !steps.iter().any(|s| s.name == name) {
            steps.push(StepPlan {
                name,
                resource_id: Some(r.resource_id),
                label: r.label.clone(),
            });
        }
    }
    steps.push(StepPlan {
        name: "notify".to_owned(),
        resource_id: None,
        label: None,
    });
    steps
}

impl Aggregate for Deployment {
    type Command = DeploymentCommand;
    type Event = DeploymentEvent;
    const STREAM_TYPE: &'static str = "deployment";

    fn evolve(&mut self, event: &DeploymentEvent) {
        match event {
            DeploymentEvent::Requested(plan) => {
                self.booking_id = Some(plan.booking_id);
                self.priority = plan.priority;
                self.status = Some(DeploymentStatus::Queued);
                self.steps = plan
                    .steps
                    .iter()
                    .map(|plan| StepState {
                        plan: plan.clone(),
                        done: false,
                        attempts: 0,
                        attempts_before_retry: 0,
                        last_error: None,
                    })
                    .collect();
            }
            DeploymentEvent::Started => self.status = Some(DeploymentStatus::Running),
            DeploymentEvent::StepSucceeded(o) => {
                if let Some(step) = self.step_mut(&o.step) {
                    step.done = true;
                    step.attempts = o.attempt;
                }
            }
            DeploymentEvent::StepFailed(o) => {
                if let Some(step) = self.step_mut(&o.step) {
                    step.attempts = o.attempt;
                    step.last_error = o.error.clone();
                }
            }
            DeploymentEvent::Succeeded => self.status = Some(DeploymentStatus::Succeeded),
            DeploymentEvent::Failed { error } => {
                self.status = Some(DeploymentStatus::Failed);
                self.error = Some(error.clone());
            }
            DeploymentEvent::Cancelled => self.status = Some(DeploymentStatus::Cancelled),
            DeploymentEvent::Retried => {
                self.status = Some(DeploymentStatus::Queued);
                self.error = None;
                self.retries += 1;
                for step in self.steps.iter_mut().filter(|s| !s.done) {
                    step.attempts_before_retry = step.attempts;
                }
            }
        }
    }

    fn decide(&self, command: DeploymentCommand) -> Result<Vec<DeploymentEvent>, DomainError> {
        if let DeploymentCommand::Request {
            booking_id,
            booking_status,
            reservations,
            priority,
        } = command
        {
            if self.status.is_some() {
                return Err(DomainError::AlreadyExists("deployment"));
            }
            if priority > MAX_PRIORITY {
                return Err(DomainError::invalid(
                    "priority",
                    format!("must be between 0 and {MAX_PRIORITY}"),
                ));
            }
            return match booking_status {
                None => Err(DomainError::UnknownChild("booking")),
                Some(BookingStatus::Confirmed) => {
                    Ok(vec![DeploymentEvent::Requested(DeploymentPlan {
                        booking_id,
                        priority,
                        steps: plan_steps(&reservations),
                    })])
                }
                Some(other) => Err(DomainError::InvalidTransition(format!(
                    "only a confirmed booking can be deployed; this one is {}",
                    other.as_str()
                ))),
            };
        }
        let status = self.status.ok_or(DomainError::NotFound("deployment"))?;
        match command {
            DeploymentCommand::Request { .. } => unreachable!("handled above"),
            DeploymentCommand::Start => match status {
                DeploymentStatus::Queued => Ok(vec![DeploymentEvent::Started]),
                // A worker resuming after another one crashed.
                DeploymentStatus::Running => Ok(vec![]),
                _ => Err(finished(status)),
            },
            DeploymentCommand::RecordStep { step, result } => {
                // A step in flight when the deployment was cancelled still
                // happened: its outcome is recorded, no further step runs.
                if !matches!(
                    status,
                    DeploymentStatus::Running | DeploymentStatus::Cancelled
                ) {
                    return Err(finished(status));
                }
                let state = self
                    .steps
                    .iter()
                    .find(|s| s.plan.name == step)
                    .ok_or(DomainError::UnknownChild("step"))?;
                if state.done {
                    // Recorded already (a retried recording): nothing new.
                    return Ok(vec![]);
                }
                let attempt = state.attempts + 1;
                Ok(vec![match result {
                    Ok(()) => DeploymentEvent::StepSucceeded(StepOutcome {
                        step,
                        attempt,
                        error: None,
                    }),
                    Err(error) => DeploymentEvent::StepFailed(StepOutcome {
                        step,
                        attempt,
                        error: Some(truncate(error)),
                    }),
                }])
            }
            DeploymentCommand::Succeed => {
                if status != DeploymentStatus::Running {
                    return Err(finished(status));
                }
                if self.next_step().is_some() {
                    return Err(DomainError::InvalidTransition(
                        "a deployment succeeds only when every step has".into(),
                    ));
                }
                Ok(vec![DeploymentEvent::Succeeded])
            }
            DeploymentCommand::Fail { error } => match status {
                DeploymentStatus::Queued | DeploymentStatus::Running => {
                    Ok(vec![DeploymentEvent::Failed {
                        error: truncate(error),
                    }])
                }
                _ => Err(finished(status)),
            },
            DeploymentCommand::Cancel => match status {
                DeploymentStatus::Queued | DeploymentStatus::Running => {
                    Ok(vec![DeploymentEvent::Cancelled])
                }
                _ => Err(finished(status)),
            },
            DeploymentCommand::Retry => match status {
                DeploymentStatus::Failed => Ok(vec![DeploymentEvent::Retried]),
                _ => Err(DomainError::InvalidTransition(format!(
                    "only a failed deployment can be retried; this one is {}",
                    status.as_str()
                ))),
            },
        }
    }
}

fn finished(status: DeploymentStatus) -> DomainError {
    DomainError::InvalidTransition(format!("the deployment is {}", status.as_str()))
}

fn truncate(mut error: String) -> String {
    if error.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

impl DomainEvent for DeploymentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            DeploymentEvent::Requested(_) => "deployment.requested",
            DeploymentEvent::Started => "deployment.started",
            DeploymentEvent::StepSucceeded(_) => "deployment.step_succeeded",
            DeploymentEvent::StepFailed(_) => "deployment.step_failed",
            DeploymentEvent::Succeeded => "deployment.succeeded",
            DeploymentEvent::Failed { .. } => "deployment.failed",
            DeploymentEvent::Cancelled => "deployment.cancelled",
            DeploymentEvent::Retried => "deployment.retried",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            DeploymentEvent::Requested(plan) => payload_of(plan),
            DeploymentEvent::StepSucceeded(o) | DeploymentEvent::StepFailed(o) => payload_of(o),
            DeploymentEvent::Failed { error } => serde_json::json!({ "error": error }),
            DeploymentEvent::Started
            | DeploymentEvent::Succeeded
            | DeploymentEvent::Cancelled
            | DeploymentEvent::Retried => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Failed {
            error: String,
        }
        Ok(match event_type {
            "deployment.requested" => DeploymentEvent::Requested(decode(event_type, payload)?),
            "deployment.started" => DeploymentEvent::Started,
            "deployment.retried" => DeploymentEvent::Retried,
            "deployment.step_succeeded" => {
                DeploymentEvent::StepSucceeded(decode(event_type, payload)?)
            }
            "deployment.step_failed" => DeploymentEvent::StepFailed(decode(event_type, payload)?),
            "deployment.succeeded" => DeploymentEvent::Succeeded,
            "deployment.failed" => {
                let Failed { error } = decode(event_type, payload)?;
                DeploymentEvent::Failed { error }
            }
            "deployment.cancelled" => DeploymentEvent::Cancelled,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::aggregate::harness::given;

    fn reservation(resource: u128, label: Option<&str>) -> Reservation {
        Reservation {
            reservation_id: Uuid::from_u128(resource + 1000),
            resource_id: Uuid::from_u128(resource),
            starts_at: Utc.with_ymd_and_hms(2027, 6, 12, 12, 0, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2027, 6, 12, 20, 0, 0).unwrap(),
            label: label.map(str::to_owned),
            outside_working_hours: false,
            hold_id: None,
            pool_id: None,
        }
    }

    fn request(status: Option<BookingStatus>) -> DeploymentCommand {
        DeploymentCommand::Request {
            booking_id: Uuid::from_u128(7),
            booking_status: status,
            reservations: vec![
                reservation(1, Some("hall")),
                reservation(2, None),
                reservation(1, None),
            ],
            priority: 5,
        }
    }

    fn requested() -> DeploymentEvent {
        match Deployment::default()
            .decide(request(Some(BookingStatus::Confirmed)))
            .unwrap()
            .remove(0)
        {
            e @ DeploymentEvent::Requested(_) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plans_one_dispatch_per_resource_then_notify() {
        let DeploymentEvent::Requested(plan) = requested() else {
            unreachable!()
        };
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("dispatch:{}", Uuid::from_u128(1)).as_str(),
                format!("dispatch:{}", Uuid::from_u128(2)).as_str(),
                "notify"
            ]
        );
        assert_eq!(plan.steps[0].label.as_deref(), Some("hall"));
    }

    #[test]
    fn only_confirmed_bookings_deploy() {
        for status in [
            BookingStatus::Requested,
            BookingStatus::InProgress,
            BookingStatus::Completed,
            BookingStatus::Cancelled,
        ] {
            let e = given::<Deployment>([])
                .when(request(Some(status)))
                .then_refused();
            assert!(matches!(e, DomainError::InvalidTransition(_)), "{status:?}");
        }
        assert_eq!(
            given::<Deployment>([]).when(request(None)).then_refused(),
            DomainError::UnknownChild("booking")
        );
        let mut too_high = request(Some(BookingStatus::Confirmed));
        if let DeploymentCommand::Request { priority, .. } = &mut too_high {
            *priority = 11;
        }
        given::<Deployment>([])
            .when(too_high)
            .then_invalid(&["priority"]);
    }

    #[test]
    fn a_succeeded_step_is_never_recorded_again() {
        let step = format!("dispatch:{}", Uuid::from_u128(1));
        let ok = || DeploymentCommand::RecordStep {
            step: step.clone(),
            result: Ok(()),
        };
        let failed_once = given::<Deployment>([requested(), DeploymentEvent::Started])
            .when(DeploymentCommand::RecordStep {
                step: step.clone(),
                result: Err("503".into()),
            })
            .then([DeploymentEvent::StepFailed(StepOutcome {
                step: step.clone(),
                attempt: 1,
                error: Some("503".into()),
            })]);
        let events = failed_once.decide(ok()).unwrap();
        assert_eq!(
            events,
            [DeploymentEvent::StepSucceeded(StepOutcome {
                step: step.clone(),
                attempt: 2,
                error: None,
            })]
        );
        let mut after = failed_once;
        after.evolve(&events[0]);
        assert_eq!(after.progress(), (1, 3));
        assert!(after.decide(ok()).unwrap().is_empty());
        assert_eq!(
            after.next_step().map(|s| s.plan.name.as_str()),
            Some(format!("dispatch:{}", Uuid::from_u128(2)).as_str())
        );
    }

    #[test]
    fn succeeds_only_when_every_step_has() {
        let e = given::<Deployment>([requested(), DeploymentEvent::Started])
            .when(DeploymentCommand::Succeed)
            .then_refused();
        assert!(matches!(e, DomainError::InvalidTransition(_)));
    }

    #[test]
    fn cancel_stops_queued_and_running_but_not_finished() {
        given::<Deployment>([requested()])
            .when(DeploymentCommand::Cancel)
            .then([DeploymentEvent::Cancelled]);
        let cancelled = given::<Deployment>([requested(), DeploymentEvent::Started])
            .when(DeploymentCommand::Cancel)
            .then([DeploymentEvent::Cancelled]);
        assert!(cancelled.decide(DeploymentCommand::Start).is_err());
        assert!(cancelled.decide(DeploymentCommand::Succeed).is_err());
        // The step that was in flight at the cancel is still recorded.
        assert!(
            cancelled
                .decide(DeploymentCommand::RecordStep {
                    step: "notify".into(),
                    result: Ok(())
                })
                .is_ok()
        );
        given::<Deployment>([
            requested(),
            DeploymentEvent::Started,
            DeploymentEvent::Failed { error: "x".into() },
        ])
        .when(DeploymentCommand::Cancel)
        .then_refused();
    }

    #[test]
    fn resuming_a_running_deployment_records_nothing() {
        given::<Deployment>([requested(), DeploymentEvent::Started])
            .when(DeploymentCommand::Start)
            .then([]);
    }

    #[test]
    fn events_round_trip_through_payloads() {
        let events = [
            requested(),
            DeploymentEvent::Started,
            DeploymentEvent::StepFailed(StepOutcome {
                step: "notify".into(),
                attempt: 1,
                error: Some("timeout".into()),
            }),
            DeploymentEvent::Failed {
                error: "gave up".into(),
            },
            DeploymentEvent::Cancelled,
        ];
        for e in events {
            let back = DeploymentEvent::from_payload(e.event_type(), &e.to_payload()).unwrap();
            assert_eq!(back, e);
        }
    }
}
