//! Deployments: request one for a confirmed booking, cancel and retry it;
//! and the progress its worker records.

use muster_domain::booking::Booking;
use muster_domain::deployment::{DEFAULT_PRIORITY, Deployment, DeploymentCommand};
use muster_store::CommandContext;
use uuid::Uuid;

use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

/// Requests a deployment of a booking, planned from the booking as read:
/// one step per reservation, then `notify`. The booking is read, not
/// written: one cancelled a moment after the read still deploys, as if the
/// cancel had come a moment later; cancel the deployment too.
struct RequestDeployment {
    deployment_id: Uuid,
    booking_id: Uuid,
    priority: u8,
}

impl Decision for RequestDeployment {
    type On = Deployment;

    fn name(&self) -> &'static str {
        "deployment.request"
    }

    fn stream_id(&self) -> Uuid {
        self.deployment_id
    }

    fn query(&self, _: &Read) -> Query {
        Query::default().stream::<Booking>(self.booking_id)
    }

    fn decide(&self, read: &Read) -> Result<Plan<Deployment>, Refusal> {
        let booking = read.state::<Booking>(self.booking_id);
        Ok(Plan::new(DeploymentCommand::Request {
            booking_id: self.booking_id,
            booking_status: booking.and_then(|b| b.status),
            reservations: booking.map(|b| b.reservations.clone()).unwrap_or_default(),
            priority: self.priority,
        }))
    }

    fn resource_field(&self, _: Uuid) -> String {
        "booking_id".to_owned()
    }
}

impl App {
    /// Requests a deployment of booking `booking_id`; its job is queued in
    /// the same commit.
    pub async fn request_deployment(
        &self,
        ctx: &CommandContext,
        booking_id: Uuid,
        priority: Option<u8>,
    ) -> Answer<Deployment> {
        let decision = RequestDeployment {
            deployment_id: Uuid::now_v7(),
            booking_id,
            priority: priority.unwrap_or(DEFAULT_PRIORITY),
        };
        self.run(ctx, decision).await
    }

    /// Cancels a queued or running deployment: it stops before its next
    /// step.
    pub async fn cancel_deployment(&self, ctx: &CommandContext, id: Uuid) -> Answer<Deployment> {
        self.on_deployment(ctx, "deployment.cancel", id, DeploymentCommand::Cancel)
            .await
    }

    /// Resumes a failed deployment at its first unfinished step.
    pub async fn retry_deployment(&self, ctx: &CommandContext, id: Uuid) -> Answer<Deployment> {
        self.on_deployment(ctx, "deployment.retry", id, DeploymentCommand::Retry)
            .await
    }

    /// Records a worker's progress on deployment `id`: started, a step's
    /// result, succeeded or failed.
    pub async fn record_deployment_progress(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        progress: DeploymentCommand,
    ) -> Answer<Deployment> {
        self.on_deployment(ctx, "deployment.progress", id, progress)
            .await
    }

    async fn on_deployment(
        &self,
        ctx: &CommandContext,
        name: &'static str,
        id: Uuid,
        command: DeploymentCommand,
    ) -> Answer<Deployment> {
        self.on_stream::<Deployment>(ctx, name, id, command, "booking_id")
            .await
    }
}
