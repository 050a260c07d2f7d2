//! Kinds of jobs and their retry policies.

use std::time::Duration;

use rand::Rng;

/// What kind of work a job is; each kind is its own apalis queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Runs a deployment's steps.
    Deployment,
    /// Delivers one webhook or email notification.
    Notification,
    /// Builds one report file.
    Report,
    /// Syncs one external calendar link (SPEC §12).
    Calendar,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        JobKind::Deployment,
        JobKind::Notification,
        JobKind::Report,
        JobKind::Calendar,
    ];

    /// The apalis queue (`job_type`) of this kind.
    pub fn queue(self) -> &'static str {
        match self {
            JobKind::Deployment => "muster.deployment",
            JobKind::Notification => "muster.notification",
            JobKind::Report => "muster.report",
            JobKind::Calendar => "muster.calendar",
        }
    }

    /// The short name used in metrics and the API.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Deployment => "deployment",
            JobKind::Notification => "notification",
            JobKind::Report => "report",
            JobKind::Calendar => "calendar",
        }
    }

    /// The kind whose queue is `queue`.
    pub fn from_queue(queue: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.queue() == queue)
    }
}

/// How often a kind of job runs and how long it waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The delay before the second attempt; it doubles after each failure.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): exponential,
    /// capped, with jitter over its upper half so that jobs failing
    /// together do not come back together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_delay);
        capped.mul_f64(0.5 + rand::rng().random::<f64>() * 0.5)
    }
}

/// The retry policy of every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPolicies {
    /// Deployments (SPEC: 3 attempts by default).
    pub deployment: RetryPolicy,
    /// Notifications.
    pub notification: RetryPolicy,
    /// Reports.
    pub report: RetryPolicy,
    /// Calendar syncs: a calendar server that is down is tried again
    /// with backoff; the next periodic sync comes anyway.
    pub calendar: RetryPolicy,
}

impl Default for JobPolicies {
    fn default() -> Self {
        Self {
            deployment: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(60),
            },
            notification: RetryPolicy {
                attempts: 8,
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(3_600),
            },
            report: RetryPolicy {
                attempts: 2,
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(60),
            },
            calendar: RetryPolicy {
                attempts: 4,
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(120),
            },
        }
    }
}

impl JobPolicies {
    /// The policy of `kind`.
    pub fn of(&self, kind: JobKind) -> RetryPolicy {
        match kind {
            JobKind::Deployment => self.deployment,
            JobKind::Notification => self.notification,
            JobKind::Report => self.report,
            JobKind::Calendar => self.calendar,
        }
    }
}
