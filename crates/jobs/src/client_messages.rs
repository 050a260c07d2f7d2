//! Client notifications' tables: a tenant's settings, and one row per
//! message to a booking's client (made once per causing event by the
//! reactor, sent by the workers, listed per booking).

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::client_message::{ClientSettings, MessageKind, PlannedMessage};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::JobsError;

/// The client-notification tables. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientMessages {
    pool: PgPool,
}

/// A tenant's settings as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether clients hear anything.
    pub enabled: bool,
    /// When they were last turned on (set by the database).
    pub enabled_since: Option<DateTime<Utc>>,
    /// Reminders this many seconds before the start, largest first.
    pub reminder_offsets: Vec<i64>,
    /// The messages' From (`Name <address>`), if not the server's.
    pub sender: Option<String>,
}

impl Settings {
    /// What the reactor's rule needs of them.
    pub fn rule(&self) -> ClientSettings {
        ClientSettings {
            enabled: self.enabled,
            enabled_since: self.enabled_since,
            reminder_offsets: self.reminder_offsets.clone(),
        }
    }
}

/// One message, as listed per booking.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageView {
    /// Its id.
    pub id: Uuid,
    /// `confirmation`, `change`, `cancellation` or `reminder`.
    pub kind: String,
    /// The client's address.
    pub recipient: String,
    /// `pending`, `sent`, `dead` (gave up), or `skipped` (a reminder for
    /// a booking that moved or is no longer confirmed).
    pub status: String,
    /// When it may go out.
    pub due_at: DateTime<Utc>,
    /// The calendar invitation's `SEQUENCE`.
    pub sequence: i32,
    /// Attempts so far.
    pub attempts: i32,
    /// Why the last attempt failed, or why it was skipped.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// The event that caused it.
    pub event_position: i64,
}

/// A message as the worker sends it.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// What it says.
    pub kind: MessageKind,
    /// The booking it is about (every kind but an offer).
    pub booking_id: Option<Uuid>,
    /// The waitlist entry it is about (an offer).
    pub entry_id: Option<Uuid>,
    /// The event that caused it.
    pub event_position: i64,
    /// To whom.
    pub recipient: String,
    /// For a reminder: the start it reminds of.
    pub reminds_of: Option<DateTime<Utc>>,
    /// The invitation's `SEQUENCE`.
    pub sequence: i32,
    /// Where it stands.
    pub status: String,
    /// The tenant's sender, if set.
    pub sender: Option<String>,
    /// Whether the tenant still has client notifications on.
    pub enabled: bool,
}

/// A message the reactor has just made, to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id (the job's idempotency key).
    pub message_id: Uuid,
    /// When it may go out.
    pub due_at: DateTime<Utc>,
}

impl ClientMessages {
    /// The tables on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// `tenant`'s settings (disabled, no reminders, until set).
    pub async fn settings(&self, tenant: &TenantId) -> Result<Settings, JobsError> {
        let mut conn = self.pool.acquire().await?;
        Self::settings_on(&mut conn, tenant).await
    }

    async fn settings_on(
        conn: &mut PgConnection,
        tenant: &TenantId,
    ) -> Result<Settings, JobsError> {
        let row = sqlx::query!(
            r#"select enabled, enabled_since, reminder_offsets, sender
                 from client_notification_settings
                where tenant_id = $1"#,
            tenant.as_str(),
        )
        .fetch_optional(conn)
        .await?;
        Ok(match row {
            Some(r) => Settings {
                enabled: r.enabled,
                enabled_since: r.enabled_since,
                reminder_offsets: r.reminder_offsets.into_iter().map(i64::from).collect(),
                sender: r.sender,
            },
            None => Settings {
                enabled: false,
                enabled_since: None,
                reminder_offsets: Vec::new(),
                sender: None,
            },
        })
    }

    /// Replaces `tenant`'s settings (offsets already validated).
    pub async fn set_settings(
        &self,
        tenant: &TenantId,
        settings: &Settings,
    ) -> Result<(), JobsError> {
        let mut offsets: Vec<i32> = settings
            .reminder_offsets
            .iter()
            .map(|s| i32::try_from(*s).unwrap_or(i32::MAX))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        offsets.dedup();
        sqlx::query!(
            r#"insert into client_notification_settings
                   (tenant_id, enabled, enabled_since, reminder_offsets, sender)
               values ($1, $2, case when $2 then now() end, $3, $4)
               on conflict (tenant_id) do update
                  set enabled = excluded.enabled,
                      enabled_since = case
                          when not excluded.enabled then null
                          when client_notification_settings.enabled
                          then client_notification_settings.enabled_since
                          else now() end,
                      reminder_offsets = excluded.reminder_offsets,
                      sender = excluded.sender, updated_at = now()"#,
            tenant.as_str(),
            settings.enabled,
            &offsets,
            settings.sender,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The settings of `tenant` as the reactor reads them, in its
    /// transaction.
    pub async fn rule_on(
        conn: &mut PgConnection,
        tenant: &TenantId,
    ) -> Result<ClientSettings, JobsError> {
        Ok(Self::settings_on(conn, tenant).await?.rule())
    }

    /// Records `planned` for `booking_id`, caused by the event at
    /// `position`, in the reactor's transaction; returns the messages made
    /// now (a repeat of the same event makes none).
    pub async fn insert(
        conn: &mut PgConnection,
        tenant: &TenantId,
        booking_id: Uuid,
        position: i64,
        planned: &[PlannedMessage],
    ) -> Result<Vec<NewMessage>, JobsError> {
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = planned.iter().map(|_| Uuid::now_v7()).collect();
        let kinds: Vec<&str> = planned.iter().map(|m| m.kind.as_str()).collect();
        let recipients: Vec<&str> = planned.iter().map(|m| m.recipient.as_str()).collect();
        let due: Vec<DateTime<Utc>> = planned.iter().map(|m| m.due_at).collect();
        let reminds: Vec<Option<DateTime<Utc>>> = planned.iter().map(|m| m.reminds_of).collect();
        let sequences: Vec<i32> = planned.iter().map(|m| m.sequence).collect();
        let rows = sqlx::query!(
            r#"insert into client_messages
                   (tenant_id, message_id, booking_id, kind, event_position, recipient, due_at,
                    reminds_of, sequence)
               select $1, m.id, $2, m.kind, $3, m.recipient, m.due_at, m.reminds_of, m.sequence
                 from unnest($4::uuid[], $5::text[], $6::text[], $7::timestamptz[],
                             $8::timestamptz[], $9::int4[])
                      as m(id, kind, recipient, due_at, reminds_of, sequence)
               on conflict (tenant_id, booking_id, event_position, kind, due_at) do nothing
               returning message_id, due_at"#,
            tenant.as_str(),
            booking_id,
            position,
            &ids,
            &kinds as &[&str],
            &recipients as &[&str],
            &due,
            &reminds as &[Option<DateTime<Utc>>],
            &sequences,
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NewMessage {
                message_id: r.message_id,
                due_at: r.due_at,
            })
            .collect())
    }

    /// Forgets whom the messages about `bookings` and `entries` of an
    /// erased client were to (SPEC §12), in the reactor's transaction: a
    /// message made from events read just before the erasure is scrubbed
    /// like those the erasure scrubbed itself. One not sent yet never is.
    pub async fn scrub(
        conn: &mut PgConnection,
        tenant: &TenantId,
        bookings: &[Uuid],
        entries: &[Uuid],
    ) -> Result<(), JobsError> {
        sqlx::query!(
            r#"update client_messages
                  set recipient = '', last_error = null,
                      status = case when status = 'pending' then 'skipped' else status end
                where tenant_id = $1 and recipient <> ''
                  and (booking_id = any($2) or entry_id = any($3))"#,
            tenant.as_str(),
            bookings,
            entries,
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records the offer to waitlist entry `entry_id`'s client at
    /// `recipient`, caused by its `waitlist.offered` at `position`, in the
    /// reactor's transaction; `None` when a repeat of the event made it
    /// already.
    pub async fn insert_offer(
        conn: &mut PgConnection,
        tenant: &TenantId,
        entry_id: Uuid,
        position: i64,
        recipient: &str,
        due_at: DateTime<Utc>,
    ) -> Result<Option<NewMessage>, JobsError> {
        let row = sqlx::query!(
            r#"insert into client_messages
                   (tenant_id, message_id, entry_id, kind, event_position, recipient, due_at,
                    sequence)
               values ($1, $2, $3, 'offer', $4, $5, $6, 0)
               on conflict (tenant_id, entry_id, event_position) where entry_id is not null
                  do nothing
               returning message_id, due_at"#,
            tenant.as_str(),
            Uuid::now_v7(),
            entry_id,
            position,
            recipient,
            due_at,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| NewMessage {
            message_id: r.message_id,
            due_at: r.due_at,
        }))
    }

    /// Marks `booking_id`'s pending reminders made before the event at
    /// `position` skipped with `why` (it moved or was cancelled), in the
    /// reactor's transaction: the list shows at once that they will not go
    /// out, and their jobs find them skipped.
    pub async fn supersede_reminders(
        conn: &mut PgConnection,
        tenant: &TenantId,
        booking_id: Uuid,
        position: i64,
        why: &str,
    ) -> Result<(), JobsError> {
        // Only those made by earlier events: a re-run of this event must
        // not skip the reminders that later ones made.
        sqlx::query!(
            r#"update client_messages set status = 'skipped', last_error = $4
                where tenant_id = $1 and booking_id = $2 and kind = 'reminder'
                  and status = 'pending' and event_position < $3"#,
            tenant.as_str(),
            booking_id,
            position,
            why,
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The message to send, with the tenant's sender.
    pub async fn pending(
        &self,
        tenant: &TenantId,
        message_id: Uuid,
    ) -> Result<Option<PendingMessage>, JobsError> {
        let row = sqlx::query!(
            r#"select m.kind, m.booking_id, m.entry_id, m.event_position, m.recipient, m.reminds_of,
                      m.sequence, m.status, s.sender as "sender?",
                      coalesce(s.enabled, false) as "enabled!"
                 from client_messages m
                 left join client_notification_settings s on s.tenant_id = m.tenant_id
                where m.tenant_id = $1 and m.message_id = $2"#,
            tenant.as_str(),
            message_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PendingMessage {
                kind: MessageKind::parse(&r.kind)
                    .ok_or_else(|| JobsError::Corrupt(format!("message kind {:?}", r.kind)))?,
                booking_id: r.booking_id,
                entry_id: r.entry_id,
                event_position: r.event_position,
                recipient: r.recipient,
                reminds_of: r.reminds_of,
                sequence: r.sequence,
                status: r.status,
                sender: r.sender,
                enabled: r.enabled,
            })
        })
        .transpose()
    }

    /// Records one attempt: `status` after it (`sent`, `pending` for a
    /// retry, `dead`, `skipped`) and why it failed or was skipped.
    pub async fn record(
        &self,
        tenant: &TenantId,
        message_id: Uuid,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), JobsError> {
        sqlx::query!(
            r#"update client_messages
                  set status = $3, last_error = $4,
                      attempts = attempts + case when $3 = 'skipped' then 0 else 1 end,
                      sent_at = case when $3 = 'sent' then now() else sent_at end
                where tenant_id = $1 and message_id = $2 and status <> 'skipped'"#,
            tenant.as_str(),
            message_id,
            status,
            error,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The IANA zone of `tenant`'s resource `resource_id`, if it has one.
    pub async fn timezone_of(
        &self,
        tenant: &TenantId,
        resource_id: Uuid,
    ) -> Result<Option<String>, JobsError> {
        Ok(sqlx::query_scalar!(
            r#"select timezone from reservable_resources where tenant_id = $1 and resource_id = $2"#,
            tenant.as_str(),
            resource_id,
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The messages about `booking_id`, oldest first.
    pub async fn for_booking(
        &self,
        tenant: &TenantId,
        booking_id: Uuid,
    ) -> Result<Vec<MessageView>, JobsError> {
        Ok(sqlx::query_as!(
            MessageView,
            r#"select message_id as id, kind, recipient, status, due_at, sequence, attempts,
                      last_error, sent_at, event_position
                 from client_messages
                where tenant_id = $1 and booking_id = $2
                order by due_at, created_at, message_id
                limit 500"#,
            tenant.as_str(),
            booking_id,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
