//! Typed jobs: each job type knows its queue, its arguments and how it is
//! keyed, so that nobody builds job arguments by hand.

use muster_domain::TenantId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kind::JobKind;

/// A job's arguments, as pushed to and fetched from its queue.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// Its kind, and so its queue and retry policy.
    const KIND: JobKind;

    /// The tenant it works for (kept in the job's metadata too, so admins
    /// see only their own tenant's jobs).
    fn tenant(&self) -> &TenantId;

    /// At most one job per kind and key is ever queued.
    fn idempotency_key(&self) -> String;

    /// Higher runs first.
    fn priority(&self) -> u8 {
        0
    }

    /// Units of retryable work in the job (a deployment's steps): its
    /// attempts are the kind's attempts per unit.
    fn work_units(&self) -> u32 {
        1
    }

    /// When it was queued (ms since the epoch), for the start latency.
    fn enqueued_at(&self) -> Option<i64>;

    /// Not before this instant (a reminder's time); `None`: at once.
    fn run_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
}

/// Runs a deployment's steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentJob {
    /// The tenant.
    pub tenant: TenantId,
    /// The deployment.
    pub deployment_id: Uuid,
    /// Higher runs first.
    #[serde(default)]
    pub priority: u8,
    /// The deployment's steps.
    #[serde(default)]
    pub steps: u32,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
    /// Which run: 0 the first, n after n retries of a failed deployment.
    #[serde(default)]
    pub run: u32,
}

impl Job for DeploymentJob {
    const KIND: JobKind = JobKind::Deployment;

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// One job per run of a deployment: a retry queues a job of its own.
    fn idempotency_key(&self) -> String {
        match self.run {
            0 => format!("deployment:{}", self.deployment_id),
            run => format!("deployment:{}:run:{run}", self.deployment_id),
        }
    }

    fn priority(&self) -> u8 {
        self.priority
    }

    fn work_units(&self) -> u32 {
        self.steps
    }

    fn enqueued_at(&self) -> Option<i64> {
        self.enqueued_at
    }
}

/// Delivers one webhook or email notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationJob {
    /// The tenant.
    pub tenant: TenantId,
    /// The delivery (also the `X-Muster-Delivery` header), or the client
    /// message when `client` is set.
    pub delivery_id: Uuid,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
    /// A message to a booking's client (`client_messages`), not a
    /// subscription's delivery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client: bool,
    /// Not before this instant (a reminder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
}

impl NotificationJob {
    /// Delivers `delivery_id` of `tenant` to its subscription.
    pub fn delivery(tenant: TenantId, delivery_id: Uuid) -> Self {
        Self {
            tenant,
            delivery_id,
            enqueued_at: None,
            client: false,
            not_before: None,
        }
    }

    /// Sends client message `message_id` of `tenant`, not before
    /// `not_before`.
    pub fn client_message(
        tenant: TenantId,
        message_id: Uuid,
        not_before: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        Self {
            tenant,
            delivery_id: message_id,
            enqueued_at: None,
            client: true,
            not_before,
        }
    }
}

impl Job for NotificationJob {
    const KIND: JobKind = JobKind::Notification;

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn idempotency_key(&self) -> String {
        self.delivery_id.to_string()
    }

    fn enqueued_at(&self) -> Option<i64> {
        self.enqueued_at
    }

    fn run_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.not_before
    }
}

/// Builds one report file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportJob {
    /// The tenant.
    pub tenant: TenantId,
    /// The report.
    pub report_id: Uuid,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
}

impl Job for ReportJob {
    const KIND: JobKind = JobKind::Report;

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn idempotency_key(&self) -> String {
        format!("report:{}", self.report_id)
    }

    fn enqueued_at(&self) -> Option<i64> {
        self.enqueued_at
    }
}

/// Syncs one external calendar link: reads the calendar, and commits what
/// changed through the one commit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSyncJob {
    /// The tenant.
    pub tenant: TenantId,
    /// The link.
    pub calendar_id: Uuid,
    /// This request of a sync (periodic, on demand, or the first): each
    /// is a job of its own.
    pub request_id: Uuid,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
}

impl CalendarSyncJob {
    /// A new request to sync `calendar_id` of `tenant`.
    pub fn new(tenant: TenantId, calendar_id: Uuid) -> Self {
        Self {
            tenant,
            calendar_id,
            request_id: Uuid::now_v7(),
            enqueued_at: None,
        }
    }
}

impl CalendarSyncJob {
    /// A request to sync `calendar_id` of `tenant` for the change `key`
    /// names: the same change is queued once.
    pub fn keyed(tenant: TenantId, calendar_id: Uuid, key: &str) -> Self {
        Self {
            tenant,
            calendar_id,
            request_id: Uuid::new_v5(&calendar_id, key.as_bytes()),
            enqueued_at: None,
        }
    }
}

impl Job for CalendarSyncJob {
    const KIND: JobKind = JobKind::Calendar;

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn idempotency_key(&self) -> String {
        format!("calendar:{}:{}", self.calendar_id, self.request_id)
    }

    fn enqueued_at(&self) -> Option<i64> {
        self.enqueued_at
    }
}
