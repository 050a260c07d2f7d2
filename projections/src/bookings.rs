//! Projection `bookings`: `read.bookings` (one row per booking, with the
//! whole detail answer in `document`), and the normalised
//! `read.booking_reservations` (the resource schedules),
//! `read.booking_tasks` and `read.booking_status_history`.
//!
//! Like `resources`, a batch loads the documents its events touch, folds
//! the events with the domain's own `Booking::evolve` (so a release
//! shortens or removes a reservation here exactly as on the write side),
//! and writes everything back with a handful of set-based statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::booking::{
    Booking, BookingDetails, BookingEvent, BookingStatus, Client, Reservation, Task,
};
use muster_domain::{Aggregate, DomainEvent};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ProjectionError, expect_next};

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
}

impl BookingDocument {
    /// The domain state this document shows.
    fn to_state(&self) -> Booking {
        Booking {
            details: Some(BookingDetails {
                title: self.title.clone(),
                client: Client {
                    name: self.client.name.clone(),
                    email: self.client.email.clone(),
                    phone: self.client.phone.clone(),
                },
                starts_at: self.starts_at,
                ends_at: self.ends_at,
                headcount: self.headcount,
                notes: self.notes.clone(),
            }),
            status: parse_status(&self.status),
            reservations: self
                .reservations
                .iter()
                .map(|r| Reservation {
                    reservation_id: r.reservation_id,
                    resource_id: r.resource_id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    label: r.label.clone(),
                })
                .collect(),
            tasks: self
                .tasks
                .iter()
                .map(|t| {
                    let task = Task {
                        task_id: t.task_id,
                        title: t.title.clone(),
                        due_at: t.due_at,
                        assignee_id: t.assignee_id,
                    };
                    (task, t.completed)
                })
                .collect(),
        }
    }

    /// Takes over `state`'s fields after `event` was folded into it.
    fn show(&mut self, state: &Booking, event: &RecordedEvent) {
        if let Some(details) = &state.details {
            self.title.clone_from(&details.title);
            self.client = ClientView {
                name: details.client.name.clone(),
                email: details.client.email.clone(),
                phone: details.client.phone.clone(),
            };
            self.starts_at = details.starts_at;
            self.ends_at = details.ends_at;
            self.headcount = details.headcount;
            self.notes.clone_from(&details.notes);
        }
        let status = state.status.map_or("requested", BookingStatus::as_str);
        if self.status_history.is_empty() || self.status != status {
            self.status_history.push(StatusChange {
                status: status.to_owned(),
                at: event.recorded_at,
                version: event.stream_version,
                position: event.position,
            });
        }
        self.status = status.to_owned();
        self.reservations = state
            .reservations
            .iter()
            .map(|r| ReservationView {
                reservation_id: r.reservation_id,
                resource_id: r.resource_id,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                label: r.label.clone(),
            })
            .collect();
        self.tasks = state
            .tasks
            .iter()
            .map(|(t, completed)| TaskView {
                task_id: t.task_id,
                title: t.title.clone(),
                due_at: t.due_at,
                assignee_id: t.assignee_id,
                completed: *completed,
            })
            .collect();
        self.version = event.stream_version;
        self.position = event.position;
        self.updated_at = event.recorded_at;
    }

    /// An empty document for a booking requested by `event`.
    fn new(event: &RecordedEvent, details: &BookingDetails) -> Self {
        Self {
            id: event.stream_id,
            version: 0,
            position: event.position,
            title: details.title.clone(),
            client: ClientView {
                name: details.client.name.clone(),
                email: None,
                phone: None,
            },
            starts_at: details.starts_at,
            ends_at: details.ends_at,
            headcount: details.headcount,
            notes: None,
            status: String::new(),
            reservations: Vec::new(),
            tasks: Vec::new(),
            status_history: Vec::new(),
            requested_at: event.recorded_at,
            updated_at: event.recorded_at,
        }
    }
}

fn parse_status(status: &str) -> Option<BookingStatus> {
    serde_json::from_value(serde_json::Value::String(status.to_owned())).ok()
}

type Key = (TenantId, Uuid);

/// What a batch changed of one booking.
struct Touched {
    document: BookingDocument,
    /// History entries already stored (the rest are new).
    stored_history: usize,
    reservations_changed: bool,
    tasks_changed: bool,
    changed: bool,
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.stream_type == Booking::STREAM_TYPE)
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let mut touched = load(conn, &events).await?;
    for event in &events {
        let decoded = BookingEvent::from_payload(&event.event_type, event.payload.clone())
            .map_err(|e| ProjectionError::poison(event, e))?;
        let key = (event.tenant.clone(), event.stream_id);
        if let Some(entry) = touched.get(&key) {
            expect_next(event, entry.document.version)?;
        } else if let BookingEvent::Requested(details) = &decoded {
            expect_next(event, 0)?;
            let document = BookingDocument::new(event, details);
            touched.insert(
                key.clone(),
                Touched {
                    document,
                    stored_history: 0,
                    reservations_changed: false,
                    tasks_changed: false,
                    changed: false,
                },
            );
        } else {
            return Err(ProjectionError::poison(
                event,
                "the booking was never requested",
            ));
        }
        let Some(entry) = touched.get_mut(&key) else {
            continue;
        };
        let mut state = if entry.document.version == 0 {
            Booking::default()
        } else {
            entry.document.to_state()
        };
        state.evolve(&decoded);
        entry.document.show(&state, event);
        entry.changed = true;
        match decoded {
            BookingEvent::ReservationAdded(_)
            | BookingEvent::ReservationReleased { .. }
            | BookingEvent::ReservationMoved(_)
            | BookingEvent::Completed
            | BookingEvent::Cancelled { .. } => entry.reservations_changed = true,
            BookingEvent::TaskAdded(_) | BookingEvent::TaskCompleted { .. } => {
                entry.tasks_changed = true;
            }
            _ => {}
        }
    }
    let mut changed: Vec<(&Key, &Touched)> = touched.iter().filter(|(_, t)| t.changed).collect();
    changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
    save(conn, &changed).await
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, Touched>, ProjectionError> {
    let keys: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!({"tenant_id": e.tenant, "booking_id": e.stream_id}))
        .collect();
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
        let stored_history = document.status_history.len();
        loaded.insert(
            (tenant, document.id),
            Touched {
                document,
                stored_history,
                reservations_changed: false,
                tasks_changed: false,
                changed: false,
            },
        );
    }
    Ok(loaded)
}

async fn save(
    conn: &mut PgConnection,
    changed: &[(&Key, &Touched)],
) -> Result<(), ProjectionError> {
    let mut bookings = Vec::with_capacity(changed.len());
    let mut replaced_reservations = Vec::new();
    let mut reservations = Vec::new();
    let mut replaced_tasks = Vec::new();
    let mut tasks = Vec::new();
    let mut history = Vec::new();
    for ((tenant, id), t) in changed {
        let d = &t.document;
        bookings.push(serde_json::json!({
            "tenant_id": tenant, "booking_id": id, "title": d.title,
            "client_name": d.client.name, "client_email": d.client.email,
            "client_phone": d.client.phone, "starts_at": d.starts_at, "ends_at": d.ends_at,
            "headcount": d.headcount, "status": d.status, "version": d.version,
            "requested_at": d.requested_at, "updated_at": d.updated_at,
            "position": d.position, "document": d,
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
        history.extend(d.status_history[t.stored_history..].iter().map(|h| {
            serde_json::json!({
                "tenant_id": tenant, "booking_id": id, "version": h.version,
                "status": h.status, "changed_at": h.at, "position": h.position,
            })
        }));
    }
    sqlx::query(
        r#"insert into bookings
               (tenant_id, booking_id, title, client_name, client_email, client_phone,
                starts_at, ends_at, headcount, status, version, requested_at, updated_at,
                position, document)
           select * from jsonb_to_recordset($1) as x(
                  tenant_id text, booking_id uuid, title text, client_name text,
                  client_email text, client_phone text, starts_at timestamptz,
                  ends_at timestamptz, headcount integer, status text, version integer,
                  requested_at timestamptz, updated_at timestamptz, position bigint,
                  document jsonb)
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
    sqlx::query(delete)
        .bind(serde_json::Value::Array(owners))
        .execute(&mut *conn)
        .await?;
    sqlx::query(insert)
        .bind(serde_json::Value::Array(rows))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
