//! The deployment job: run a deployment's steps in order, recording each
//! outcome on the deployment's stream before going on, so that a step
//! that succeeded is never run again, by this worker or by the one that
//! rescues the job after a crash.

use muster_app::{Outcome, Refusal};
use muster_domain::deployment::{Deployment, DeploymentCommand, DeploymentStatus, StepState};
use muster_domain::notification::{WebhookTarget, wants};
use muster_jobs::DeploymentJob;
use muster_store::CommandContext;
use tracing::Instrument;
use uuid::Uuid;

use crate::Runtime;
use crate::failure::{Cause, JobFailure};
use crate::queue::{Attempt, JobLease};

/// The event type dispatch webhooks subscribe to.
pub const STEP_EVENT: &str = "deployment.step";

/// Runs (or resumes) one deployment.
pub(crate) async fn run_deployment(
    rt: &Runtime,
    job: &DeploymentJob,
    book: &mut Attempt,
) -> Result<(), JobFailure> {
    let span = tracing::info_span!("job.deployment", deployment_id = %job.deployment_id, tenant = %job.tenant, attempt = book.number());
    // The job's attempt budget is the policy's attempts per step.
    let (state, _) = rt
        .store
        .load::<Deployment>(&job.tenant, job.deployment_id)
        .await?;
    book.set_units(state.steps.len());
    let Some(lease) = JobLease::take(rt, format!("deployment:{}", job.deployment_id)).await? else {
        return Err(JobFailure::Retry(Cause::Leased("deployment")));
    };
    let result = drive(rt, job, book.job_id()).instrument(span).await;
    lease.release().await;
    result
}

async fn drive(rt: &Runtime, job: &DeploymentJob, id: &str) -> Result<(), JobFailure> {
    let ctx = CommandContext {
        tenant: job.tenant.clone(),
        actor: "worker".to_owned(),
        correlation_id: format!("job:{id}"),
        command_id: Uuid::now_v7(),
        if_match: None,
        idempotency: None,
    };
    if !command(rt, &ctx, job, DeploymentCommand::Start).await? {
        return Ok(());
    }
    loop {
        // Fresh state before every step: a cancel stops it here.
        let (state, _) = rt
            .store
            .load::<Deployment>(&job.tenant, job.deployment_id)
            .await?;
        match state.status {
            Some(DeploymentStatus::Running) => {}
            None => return Err(JobFailure::Fatal(Cause::Missing("deployment"))),
            Some(_) => return Ok(()),
        }
        let Some(step) = state.next_step().cloned() else {
            command(rt, &ctx, job, DeploymentCommand::Succeed).await?;
            metrics::counter!("muster_deployments_total", "outcome" => "succeeded").increment(1);
            return Ok(());
        };
        let result = run_step(rt, job, &state, &step).await;
        let failed = result.as_ref().err().cloned();
        let recorded = command(
            rt,
            &ctx,
            job,
            DeploymentCommand::RecordStep {
                step: step.plan.name.clone(),
                result,
            },
        )
        .await?;
        if !recorded {
            return Ok(());
        }
        if let Some(error) = failed {
            // The budget counts from the last retry: a retried deployment
            // gets a fresh one for the steps still to do.
            let attempts = step.attempts_in_budget() + 1;
            let allowed = rt.config.policies.deployment.attempts;
            if attempts >= allowed {
                let cause = Cause::StepExhausted {
                    step: step.plan.name.clone(),
                    attempts,
                    error,
                };
                command(
                    rt,
                    &ctx,
                    job,
                    DeploymentCommand::Fail {
                        error: cause.to_string(),
                    },
                )
                .await?;
                metrics::counter!("muster_deployments_total", "outcome" => "failed").increment(1);
                return Err(JobFailure::Fatal(cause));
            }
            return Err(JobFailure::Retry(Cause::StepFailed {
                step: step.plan.name.clone(),
                error,
            }));
        }
    }
}

/// Runs `command` on the deployment. `Ok(false)`: the deployment has
/// finished (a cancel won the race) and the job has nothing more to do.
async fn command(
    rt: &Runtime,
    ctx: &CommandContext,
    job: &DeploymentJob,
    command: DeploymentCommand,
) -> Result<bool, JobFailure> {
    let ctx = CommandContext {
        command_id: Uuid::now_v7(),
        ..ctx.clone()
    };
    match rt
        .app
        .record_deployment_progress(&ctx, job.deployment_id, command)
        .await?
    {
        Outcome::Executed(_) | Outcome::Replayed(_) => Ok(true),
        Outcome::Refused(Refusal::InvalidTransition { detail }) => {
            tracing::info!(deployment_id = %job.deployment_id, reason = detail, "deployment finished elsewhere; stopping");
            Ok(false)
        }
        Outcome::Refused(Refusal::NotFound { .. }) => {
            Err(JobFailure::Fatal(Cause::Missing("deployment")))
        }
        Outcome::Refused(refusal) => Err(JobFailure::Retry(Cause::Refused(refusal))),
    }
}

/// Calls every dispatch webhook of the tenant for `step`; all must answer
/// 2xx. Receivers get the same idempotency key on every attempt of a step.
async fn run_step(
    rt: &Runtime,
    job: &DeploymentJob,
    state: &Deployment,
    step: &StepState,
) -> Result<(), String> {
    let subscriptions = rt
        .webhooks
        .targets(&job.tenant)
        .await
        .map_err(|e| format!("cannot read the dispatch webhooks: {e}"))?;
    let key = format!("{}:{}", job.deployment_id, step.plan.name);
    let body = serde_json::json!({
        "deployment_id": job.deployment_id,
        "booking_id": state.booking_id,
        "step": {
            "name": step.plan.name,
            "resource_id": step.plan.resource_id,
            "label": step.plan.label,
        },
        "attempt": step.attempts + 1,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    for sub in subscriptions
        .iter()
        .filter(|s| wants(&s.event_types, STEP_EVENT))
    {
        let url = match WebhookTarget::parse(&sub.url, rt.config.allow_private_targets) {
            Ok(WebhookTarget::Http(url)) => url,
            // Steps dispatch over HTTP; email subscribers are not dispatchers.
            Ok(WebhookTarget::Email(_)) => continue,
            Err(e) => {
                return Err(format!(
                    "webhook {}: target refused: {}",
                    sub.webhook_id, e.message
                ));
            }
        };
        let headers = [
            ("idempotency-key", key.clone()),
            ("x-muster-delivery", format!("{key}:{}", sub.webhook_id)),
            ("x-muster-event", STEP_EVENT.to_owned()),
        ];
        let outcome = rt
            .http
            .post_signed(&url, &sub.secret, &headers[1].1, &headers, body.clone())
            .await;
        if let Some(error) = outcome.error {
            return Err(format!("webhook {}: {error}", sub.webhook_id));
        }
    }
    Ok(())
}
