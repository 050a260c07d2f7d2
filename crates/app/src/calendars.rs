//! External calendars (SPEC §12): linking a resource's own calendar,
//! unlinking it, and committing a sync. The calendar is read by the sync
//! job (`muster_workers`); what it says is busy becomes the link's blocks
//! through the one commit path, decided under the resource's lock so that
//! the bookings a new block meets are exactly those committed before it
//! (one that comes after waits for the lock, sees the block, and is
//! refused `external-busy`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use muster_domain::calendar_link::{
    Block, CalendarCommand, CalendarKind, CalendarLink, DEFAULT_SYNC_EVERY_SECS, LinkSpec, Met,
};
use muster_domain::external::Busy;
use muster_domain::notification::WebhookTarget;
use muster_domain::policy::Claim;
use muster_domain::time::TimeRange;
use muster_store::{CommandContext, LockRequest};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::decision::{Decision, OnStream, Plan, Query, Read};
use crate::{Answer, App, AppError, Refusal};

/// The longest user name or password a link keeps.
const MAX_CREDENTIAL: usize = 500;
/// How far ahead a calendar is read when its resource sets no horizon.
const DEFAULT_HORIZON_DAYS: i64 = 366;

/// A calendar to link, as asked.
#[derive(Clone, Deserialize)]
pub struct CalendarInput {
    /// ICS or CalDAV.
    pub kind: CalendarKind,
    /// Where: `http(s)://` or `webcal://` (read as `https://`).
    pub url: String,
    /// HTTP basic credentials, if the calendar needs them.
    pub username: Option<String>,
    /// With `username`.
    pub password: Option<String>,
    /// Write the resource's reservations to it (CalDAV only).
    pub publish: bool,
    /// Keep and show its events' titles.
    pub show_titles: bool,
    /// Seconds between periodic syncs (default 300).
    pub sync_every_secs: Option<u32>,
}

/// What a link's sealed part holds: where to read, and as whom. Its
/// `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarAccess {
    /// The URL.
    pub url: String,
    /// HTTP basic user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// HTTP basic password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for CalendarAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarAccess")
            .field("url", &shown_location(&self.url))
            .field("username", &self.username.as_ref().map(|_| "…"))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// `url` as it may be shown: without credentials, query or fragment
/// (ICS links often carry their secret in the query).
pub fn shown_location(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => String::new(),
    }
}

/// The window a calendar is read over for a resource that may be booked
/// `max_advance_secs` ahead (a year without a limit): from a day ago, so
/// that what is under way still counts.
pub fn sync_window(now: DateTime<Utc>, max_advance_secs: Option<i32>) -> TimeRange {
    let ahead = max_advance_secs
        .map(|s| Duration::seconds(i64::from(s)) + Duration::days(1))
        .unwrap_or_else(|| Duration::days(DEFAULT_HORIZON_DAYS));
    TimeRange {
        starts_at: now - Duration::days(1),
        ends_at: now + ahead,
    }
}

impl CalendarInput {
    /// The access to seal and the URL to show, or why not; `allow_private`
    /// is the operator's `MUSTER_ALLOW_PRIVATE_WEBHOOKS`, since a calendar
    /// URL is fetched by the server as a webhook is posted to.
    fn vet(&self, allow_private: bool) -> Result<CalendarAccess, Refusal> {
        let url = match self.url.strip_prefix("webcal://") {
            Some(rest) => format!("https://{rest}"),
            None => self.url.clone(),
        };
        match WebhookTarget::parse(&url, allow_private) {
            Ok(WebhookTarget::Http(_)) => {}
            Ok(WebhookTarget::Email(_)) => {
                return Err(Refusal::invalid("url", "must be an http(s) or webcal URL"));
            }
            Err(e) => return Err(Refusal::Invalid { errors: vec![e] }),
        }
        let mut errors = Vec::new();
        for (field, value) in [("username", &self.username), ("password", &self.password)] {
            if let Some(v) = value
                && (v.is_empty()
                    || v.chars().count() > MAX_CREDENTIAL
                    || v.contains(char::is_control))
            {
                errors.push(muster_domain::FieldError::new(
                    field,
                    format!("must be 1 to {MAX_CREDENTIAL} characters without control characters"),
                ));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            errors.push(muster_domain::FieldError::new(
                "password",
                "username and password come together",
            ));
        }
        if !errors.is_empty() {
            return Err(Refusal::Invalid { errors });
        }
        Ok(CalendarAccess {
            url,
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

/// A sync's commit: the link's blocks become what its calendar says,
/// decided under its resource's lock.
struct SyncCalendar {
    calendar_id: Uuid,
    busy: Vec<Busy>,
    window: TimeRange,
}

impl SyncCalendar {
    fn blocks(&self, link: &CalendarLink) -> Vec<Block> {
        let show_titles = link.spec.as_ref().is_some_and(|s| s.show_titles);
        self.busy
            .iter()
            .map(|b| Block::from_busy(self.calendar_id, b, show_titles))
            .collect()
    }
}

impl Decision for SyncCalendar {
    type On = CalendarLink;

    fn name(&self) -> &'static str {
        "calendar.sync"
    }

    fn stream_id(&self) -> Uuid {
        self.calendar_id
    }

    fn query(&self, read: &Read) -> Query {
        let query = Query::default().stream::<CalendarLink>(self.calendar_id);
        let mut request = LockRequest {
            with_held: true,
            ..LockRequest::default()
        };
        // The new blocks are claims on the resource: its lock is taken,
        // and what it holds over each is read under it.
        if let Some(link) = read.state::<CalendarLink>(self.calendar_id)
            && let Some(spec) = &link.spec
        {
            let changes = link.changes(&self.blocks(link), &self.window);
            request.claims = changes
                .added
                .iter()
                .map(|b| {
                    let claim = Claim {
                        range: b.range(),
                        headcount: None,
                        outside_working_hours: true,
                    };
                    (spec.resource_id, claim)
                })
                .collect();
        }
        query.lock(request)
    }

    fn decide(&self, read: &Read) -> Result<Plan<CalendarLink>, Refusal> {
        let link = read
            .state::<CalendarLink>(self.calendar_id)
            .ok_or_else(|| Refusal::NotFound {
                what: "calendar".to_owned(),
            })?;
        let mut meeting: Vec<Met> = read
            .locked()
            .map(|locked| locked.held.iter().flatten())
            .into_iter()
            .flatten()
            // Bookings' reservations: not blocks, not holds.
            .filter(|h| !h.is_external() && h.hold_expires_at.is_none())
            .filter(|h| h.reservation_id != h.booking_id)
            .map(|h| Met {
                booking_id: h.booking_id,
                reservation_id: h.reservation_id,
                starts_at: h.starts_at,
                ends_at: h.ends_at,
            })
            .collect();
        meeting.sort_by_key(|m| (m.starts_at, m.reservation_id));
        meeting.dedup_by_key(|m| m.reservation_id);
        Ok(Plan::new(CalendarCommand::Sync {
            blocks: self.blocks(link),
            window: self.window,
            meeting,
        }))
    }
}

impl App {
    /// Links `input`'s calendar to resource `resource_id`: its URL and
    /// credentials are sealed with the server's key, and its first sync
    /// is queued with it.
    pub async fn link_calendar(
        &self,
        ctx: &CommandContext,
        resource_id: Uuid,
        input: CalendarInput,
        allow_private: bool,
    ) -> Answer<CalendarLink> {
        let access = match input.vet(allow_private) {
            Ok(access) => access,
            Err(refusal) => return Ok(crate::Outcome::Refused(refusal)),
        };
        let Some(key) = self.store.secret_key() else {
            return Ok(crate::Outcome::Refused(Refusal::InvalidTransition {
                detail: "this server has no MUSTER_SECRET_KEY to keep a calendar's URL and \
                         credentials with"
                    .to_owned(),
            }));
        };
        let plain = serde_json::to_vec(&access).expect("access is plain data");
        let spec = LinkSpec {
            resource_id,
            kind: input.kind,
            location: shown_location(&access.url),
            sealed: STANDARD.encode(key.seal(&plain)),
            publish: input.publish,
            show_titles: input.show_titles,
            sync_every_secs: input.sync_every_secs.unwrap_or(DEFAULT_SYNC_EVERY_SECS),
        };
        let decision = OnStream::<CalendarLink> {
            name: "calendar.link",
            stream_id: Uuid::now_v7(),
            command: CalendarCommand::Link(spec),
            resource_field: "resource_id",
        };
        self.run(ctx, decision).await
    }

    /// Removes link `calendar_id` and its blocks.
    pub async fn unlink_calendar(
        &self,
        ctx: &CommandContext,
        calendar_id: Uuid,
    ) -> Answer<CalendarLink> {
        let decision = OnStream::<CalendarLink> {
            name: "calendar.unlink",
            stream_id: calendar_id,
            command: CalendarCommand::Unlink,
            resource_field: "resource_id",
        };
        self.run(ctx, decision).await
    }

    /// Queues a sync of link `calendar_id` now; `false`: there is no
    /// such link.
    pub async fn request_calendar_sync(
        &self,
        queue: &muster_jobs::JobQueue,
        tenant: &muster_domain::TenantId,
        calendar_id: Uuid,
    ) -> Result<bool, AppError> {
        if self
            .store
            .find_calendar(tenant, calendar_id)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(muster_store::StoreError::from)?;
        let job = muster_jobs::CalendarSyncJob::new(tenant.clone(), calendar_id);
        queue.enqueue(&mut tx, &job).await?;
        tx.commit().await.map_err(muster_store::StoreError::from)?;
        Ok(true)
    }

    /// What a link's sealed part holds.
    pub fn calendar_access(&self, sealed: &[u8]) -> Result<CalendarAccess, AppError> {
        let key = self.store.secret_key().ok_or_else(|| {
            AppError::Misconfigured("MUSTER_SECRET_KEY is not set; calendars cannot be read".into())
        })?;
        let plain = key
            .open(sealed)
            .map_err(|e| AppError::Misconfigured(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|_| {
            AppError::Misconfigured("a calendar link's sealed part is not access".into())
        })
    }

    /// Commits a sync of link `calendar_id`: its blocks become `busy`
    /// (what the calendar holds in `window`). Nothing is recorded when
    /// nothing changed.
    pub async fn sync_calendar(
        &self,
        tenant: &muster_domain::TenantId,
        calendar_id: Uuid,
        busy: Vec<Busy>,
        window: TimeRange,
    ) -> Answer<CalendarLink> {
        let decision = SyncCalendar {
            calendar_id,
            busy,
            window,
        };
        let ctx = crate::system_context(tenant.clone(), "system:calendar-sync");
        self.run(&ctx, decision).await
    }
}
