//! Projection `bookings`: `read.bookings` (one row per booking, with the
//! whole detail answer in `document`), and the normalised
//! `read.booking_reservations` (the resource schedules),
//! `read.booking_tasks` and `read.booking_status_history`.
//!
//! Folds like every projection ([`crate::fold`]): a batch loads the
//! bookings its events touch as the domain's `Booking` (the document shows
//! the whole state), moves them on with `Booking::evolve` (so a release
//! shortens or removes a reservation here exactly as on the write side),
//! notes what only the envelopes know (times, the status history), and
//! writes the documents that shows back with a handful of set-based
//! statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::booking::{
    Booking, BookingDetails, BookingEvent, BookingStatus, Client, Reservation, Task,
};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ProjectionError;
use crate::fold::{Envelope, Folded, Key, events_of, fold_batch};

/// A booking as `GET /v1/bookings/{id}` answers it, stored whole in
/// `read.bookings.document`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BookingDocument {
    /// The booking's id.
    pub id: Uuid,
    /// Its version (send as `If-Match`).
    pub version: i32,
    /// Position of its last event.
    pub position: i64,
    /// What it is for.
    pub title: String,
    /// Who it is for.
    pub client: ClientView,
    /// When the booked event starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Expected number of people.
    pub headcount: u32,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The recurring series it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
    /// `requested`, `confirmed`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    /// Reservations still holding time (released ones are shortened or gone).
    pub reservations: Vec<ReservationView>,
    /// Tasks.
    pub tasks: Vec<TaskView>,
    /// Every status the booking has had, oldest first.
    pub status_history: Vec<StatusChange>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Who a booking is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// Name.
    pub name: String,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A reservation of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReservationView {
    /// Its id.
    pub reservation_id: Uuid,
    /// The reserved resource.
    pub resource_id: Uuid,
    /// Inclusive start.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end.
    pub ends_at: DateTime<Utc>,
    /// What the resource is for in this booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Booked outside the resource's working hours by a planner's override.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_working_hours: bool,
    /// The hold it was converted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<Uuid>,
}

/// A task of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Its id.
    pub task_id: Uuid,
    /// What to do.
    pub title: String,
    /// When it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// The resource it is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<Uuid>,
    /// Whether it is done.
    pub completed: bool,
}

/// One entry of a booking's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    /// The status entered.
    pub status: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The booking's version after the change.
    pub version: i32,
    /// Position of the event that changed it.
    pub position: i64,
    /// Who changed it (the `actor` of the event: an API key id, `worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// What only the envelopes of a booking's events say: when it was
/// requested and last changed, and when each status was entered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BookingEnvelope {
    id: Uuid,
    version: i32,
    position: i64,
    status_history: Vec<StatusChange>,
    requested_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A booking as this projection folds it.
type FoldedBooking = Folded<Booking, BookingEnvelope>;

impl Envelope<Booking> for BookingEnvelope {
    const NOT_CREATED: &'static str = "the booking was never requested";

    fn created(state: &Booking) -> bool {
        state.details.is_some()
    }

    fn first(event: &RecordedEvent) -> Self {
        Self {
            id: event.stream_id,
            version: 0,
            position: event.position,
            status_history: Vec::new(),
            requested_at: event.recorded_at,
            updated_at: event.recorded_at,
        }
    }

    fn version(&self) -> i32 {
        self.version
    }

    fn note(&mut self, event: &RecordedEvent, _: &BookingEvent, state: &Booking) {
        let status = state.status.map_or("requested", BookingStatus::as_str);
        if self
            .status_history
            .last()
            .is_none_or(|h| h.status != status)
        {
            self.status_history.push(StatusChange {
                status: status.to_owned(),
                at: event.recorded_at,
                version: event.stream_version,
                position: event.position,
                actor: event.metadata["actor"].as_str().map(str::to_owned),
            });
        }
        self.version = event.stream_version;
        self.position = event.position;
        self.updated_at = event.recorded_at;
    }
}

impl FoldedBooking {
    /// The document this booking shows; `None` before it was requested
    /// (which [`crate::fold::fold`] never returns).
    fn document(&self) -> Option<BookingDocument> {
        let (state, envelope) = (&self.state, &self.envelope);
        let details = state.details.as_ref()?;
        Some(BookingDocument {
            id: envelope.id,
            version: envelope.version,
            position: envelope.position,
            title: details.title.clone(),
            client: ClientView {
                name: details.client.name.clone(),
                email: details.client.email.clone(),
                phone: details.client.phone.clone(),
            },
            starts_at: details.starts_at,
            ends_at: details.ends_at,
            headcount: details.headcount,
            notes: details.notes.clone(),
            series_id: details.series_id,
            status: state
                .status
                .map_or("requested", BookingStatus::as_str)
                .to_owned(),
            reservations: state
                .reservations
                .iter()
                .map(|r| ReservationView {
                    reservation_id: r.reservation_id,
                    resource_id: r.resource_id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    label: r.label.clone(),
                    outside_working_hours: r.outside_working_hours,
                    hold_id: r.hold_id,
                })
                .collect(),
            tasks: state
                .tasks
                .iter()
                .map(|(t, completed)| TaskView {
                    task_id: t.task_id,
                    title: t.title.clone(),
                    due_at: t.due_at,
                    assignee_id: t.assignee_id,
                    completed: *completed,
                })
                .collect(),
            status_history: envelope.status_history.clone(),
            requested_at: envelope.requested_at,
            updated_at: envelope.updated_at,
        })
    }

    /// The booking a stored document shows (it shows the whole state).
    fn from_document(doc: BookingDocument) -> Result<Self, String> {
        let status: BookingStatus =
            serde_json::from_value(serde_json::Value::String(doc.status.clone()))
                .map_err(|e| format!("status {:?}: {e}", doc.status))?;
        let state = Booking {
            details: Some(BookingDetails {
                title: doc.title,
                client: Client {
                    name: doc.client.name,
                    email: doc.client.email,
                    phone: doc.client.phone,
                },
                starts_at: doc.starts_at,
                ends_at: doc.ends_at,
                headcount: doc.headcount,
                notes: doc.notes,
                series_id: doc.series_id,
            }),
            status: Some(status),
            reservations: doc
                .reservations
                .into_iter()
                .map(|r| Reservation {
                    reservation_id: r.reservation_id,
                    resource_id: r.resource_id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    label: r.label,
                    outside_working_hours: r.outside_working_hours,
                    hold_id: r.hold_id,
                })
                .collect(),
            tasks: doc
                .tasks
                .into_iter()
                .map(|t| {
                    let task = Task {
                        task_id: t.task_id,
                        title: t.title,
                        due_at: t.due_at,
                        assignee_id: t.assignee_id,
                    };
                    (task, t.completed)
                })
                .collect(),
        };
        Ok(Folded {
            state,
            envelope: BookingEnvelope {
                id: doc.id,
                version: doc.version,
                position: doc.position,
                status_history: doc.status_history,
                requested_at: doc.requested_at,
                updated_at: doc.updated_at,
            },
        })
    }
}

/// One booking a batch changed: as stored before it (`None`: new) and after.
struct Changed<'a> {
    key: &'a Key,
    stored: Option<&'a FoldedBooking>,
    document: BookingDocument,
    /// Whether its reservations and tasks differ from the stored ones
    /// (their normalised rows are then replaced).
    reservations_changed: bool,
    tasks_changed: bool,
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events = events_of::<Booking>(events);
    if events.is_empty() {
        return Ok(());
    }
    let stored = load(conn, &events).await?;
    let mut folded = stored.clone();
    let changed_keys = fold_batch(&mut folded, &events)?;
    let mut changed = Vec::with_capacity(changed_keys.len());
    for key in &changed_keys {
        let Some(after) = folded.get(key) else {
            continue;
        };
        let Some(document) = after.document() else {
            continue;
        };
        let stored = stored.get(key);
        let (reservations, tasks) = stored.map_or((&[][..], &[][..]), |s| {
            (&s.state.reservations[..], &s.state.tasks[..])
        });
        changed.push(Changed {
            key,
            stored,
            reservations_changed: after.state.reservations != reservations,
            tasks_changed: after.state.tasks != tasks,
            document,
        });
    }
    save(conn, &changed).await
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, FoldedBooking>, ProjectionError> {
    let keys: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!({"tenant_id": e.tenant, "booking_id": e.stream_id}))
        .collect();
    // Runtime-checked: unqualified tables, live or staging by search_path.

    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        r#"select b.tenant_id, b.document
             from bookings b
             join (select distinct * from jsonb_to_recordset($1) as k(tenant_id text, booking_id uuid)) k
               on b.tenant_id = k.tenant_id and b.booking_id = k.booking_id"#,
    )
    .bind(serde_json::Value::Array(keys))
    .fetch_all(&mut *conn)
    .await?;
    let mut loaded = HashMap::with_capacity(rows.len());
    for (tenant, json) in rows {
        let tenant =
            TenantId::try_from(tenant).map_err(|e| ProjectionError::poison(events[0], e))?;
        let document: BookingDocument = serde_json::from_value(json).map_err(|e| {
            ProjectionError::poison(
                events[0],
                format!("a read.bookings document does not decode: {e}"),
            )
        })?;
        let id = document.id;
        let folded = FoldedBooking::from_document(document).map_err(|e| {
            ProjectionError::poison(
                events[0],
                format!("a read.bookings document is invalid: {e}"),
            )
        })?;
        loaded.insert((tenant, id), folded);
    }
    Ok(loaded)
}

async fn save(conn: &mut PgConnection, changed: &[Changed<'_>]) -> Result<(), ProjectionError> {
    let mut bookings = Vec::with_capacity(changed.len());
    let mut replaced_reservations = Vec::new();
    let mut reservations = Vec::new();
    let mut replaced_tasks = Vec::new();
    let mut tasks = Vec::new();
    let mut history = Vec::new();
    for t in changed {
        let (tenant, id) = t.key;
        let d = &t.document;
        bookings.push(serde_json::json!({
            "tenant_id": tenant, "booking_id": id, "title": d.title,
            "client_name": d.client.name, "client_email": d.client.email,
            "client_phone": d.client.phone, "starts_at": d.starts_at, "ends_at": d.ends_at,
            "headcount": d.headcount, "status": d.status, "version": d.version,
            "requested_at": d.requested_at, "updated_at": d.updated_at,
            "position": d.position, "series_id": d.series_id, "document": d,
        }));
        let key = serde_json::json!({"tenant_id": tenant, "booking_id": id});
        if t.reservations_changed {
            replaced_reservations.push(key.clone());
            reservations.extend(d.reservations.iter().map(|r| {
                serde_json::json!({
                    "tenant_id": tenant, "booking_id": id, "reservation_id": r.reservation_id,
                    "resource_id": r.resource_id, "starts_at": r.starts_at,
                    "ends_at": r.ends_at, "label": r.label,
                })
            }));
        }
        if t.tasks_changed {
            replaced_tasks.push(key);
            tasks.extend(d.tasks.iter().map(|task| {
                serde_json::json!({
                    "tenant_id": tenant, "booking_id": id, "task_id": task.task_id,
                    "title": task.title, "due_at": task.due_at,
                    "assignee_id": task.assignee_id, "completed": task.completed,
                })
            }));
        }
        let stored_history = t.stored.map_or(0, |s| s.envelope.status_history.len());
        history.extend(d.status_history[stored_history..].iter().map(|h| {
            serde_json::json!({
                "tenant_id": tenant, "booking_id": id, "version": h.version,
                "status": h.status, "changed_at": h.at, "position": h.position,
            })
        }));
    }
    // Runtime-checked: unqualified tables, live or staging by search_path.

    sqlx::query(
        r#"insert into bookings
               (tenant_id, booking_id, title, client_name, client_email, client_phone,
                starts_at, ends_at, headcount, status, version, requested_at, updated_at,
                position, series_id, document)
           select * from jsonb_to_recordset($1) as x(
                  tenant_id text, booking_id uuid, title text, client_name text,
                  client_email text, client_phone text, starts_at timestamptz,
                  ends_at timestamptz, headcount integer, status text, version integer,
                  requested_at timestamptz, updated_at timestamptz, position bigint,
                  series_id uuid, document jsonb)
           on conflict (tenant_id, booking_id) do update
              set title = excluded.title, client_name = excluded.client_name,
                  client_email = excluded.client_email, client_phone = excluded.client_phone,
                  starts_at = excluded.starts_at, ends_at = excluded.ends_at,
                  headcount = excluded.headcount, status = excluded.status,
                  version = excluded.version, updated_at = excluded.updated_at,
                  position = excluded.position, document = excluded.document"#,
    )
    .bind(serde_json::Value::Array(bookings))
    .execute(&mut *conn)
    .await?;
    replace_children(
        conn,
        replaced_reservations,
        reservations,
        r#"delete from booking_reservations r
            using jsonb_to_recordset($1) as k(tenant_id text, booking_id uuid)
            where r.tenant_id = k.tenant_id and r.booking_id = k.booking_id"#,
        r#"insert into booking_reservations
               (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at, label)
           select * from jsonb_to_recordset($1) as x(
                  tenant_id text, reservation_id uuid, booking_id uuid, resource_id uuid,
                  starts_at timestamptz, ends_at timestamptz, label text)"#,
    )
    .await?;
    replace_children(
        conn,
        replaced_tasks,
        tasks,
        r#"delete from booking_tasks t
            using jsonb_to_recordset($1) as k(tenant_id text, booking_id uuid)
            where t.tenant_id = k.tenant_id and t.booking_id = k.booking_id"#,
        r#"insert into booking_tasks
               (tenant_id, task_id, booking_id, title, due_at, assignee_id, completed)
           select * from jsonb_to_recordset($1) as x(
                  tenant_id text, task_id uuid, booking_id uuid, title text,
                  due_at timestamptz, assignee_id uuid, completed boolean)"#,
    )
    .await?;
    if !history.is_empty() {
        // Runtime-checked: unqualified tables, live or staging by search_path.

        sqlx::query(
            r#"insert into booking_status_history
                   (tenant_id, booking_id, version, status, changed_at, position)
               select * from jsonb_to_recordset($1) as x(
                      tenant_id text, booking_id uuid, version integer, status text,
                      changed_at timestamptz, position bigint)"#,
        )
        .bind(serde_json::Value::Array(history))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces the child rows (reservations or tasks) of the bookings in
/// `owners` with `rows`: `delete` takes the owners' keys, `insert` the rows.
async fn replace_children(
    conn: &mut PgConnection,
    owners: Vec<serde_json::Value>,
    rows: Vec<serde_json::Value>,
    delete: &'static str,
    insert: &'static str,
) -> Result<(), ProjectionError> {
    if owners.is_empty() {
        return Ok(());
    }
    // Runtime-checked: unqualified tables, live or staging by search_path.

    sqlx::query(delete)
        .bind(serde_json::Value::Array(owners))
        .execute(&mut *conn)
        .await?;
    // Runtime-checked: unqualified tables, live or staging by search_path.

    sqlx::query(insert)
        .bind(serde_json::Value::Array(rows))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
