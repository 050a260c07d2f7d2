//! Projection `bookings`: `read.bookings` (one row per booking, with the
//! whole detail answer in `document`), and the normalised
//! `read.booking_reservations` (the resource schedules),
//! `read.booking_tasks`, `read.booking_status_history` and
//! `read.resource_bookings` (which bookings ever held each resource, for
//! the schedules as of a past instant).
//!
//! Folds like every projection ([`crate::fold`]): a batch loads the
//! bookings its events touch as the domain's `Booking` (the document shows
//! the whole state), moves them on with `Booking::evolve` (so a release
//! shortens or removes a reservation here exactly as on the write side),
//! notes what only the envelopes know (times, the status history), and
//! writes the documents that shows back with a handful of set-based
//! statements.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use muster_domain::booking::{
    Booking, BookingDetails, BookingEvent, BookingStatus, Client, Reservation, Task,
};
use muster_domain::erasure::{Erasure, ErasureEvent};
use muster_domain::{DomainEvent, TenantId};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ProjectionError;
use crate::copy::BinaryCopy;
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
    /// When it was checked in, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<DateTime<Utc>>,
    /// Whether it ended as a no-show (not checked in by a resource's
    /// deadline); it is then `cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_show: bool,
    /// Every status the booking has had, oldest first.
    pub status_history: Vec<StatusChange>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Who a booking is for: `{"erased":true}` alone once the client's
/// personal data was erased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// Name (absent once erased).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The client's personal data was erased (SPEC §12).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
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
    /// The pool its resource was picked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<Uuid>,
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
    /// The resources it held after any event of the batch being folded
    /// (not stored: a reservation added and moved away within one batch
    /// held its first resource all the same).
    held: BTreeSet<Uuid>,
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
            held: BTreeSet::new(),
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
        self.held
            .extend(state.reservations.iter().map(|r| r.resource_id));
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
                erased: details.client.erased,
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
                    pool_id: r.pool_id,
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
            checked_in_at: state.checked_in_at,
            no_show: state.no_show,
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
                    erased: doc.client.erased,
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
                    pool_id: r.pool_id,
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
            checked_in_at: doc.checked_in_at,
            no_show: doc.no_show,
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
                held: BTreeSet::new(),
            },
        })
    }
}

/// One booking a batch changed: as stored before it (`None`: new) and after.
struct Changed<'a> {
    key: &'a Key,
    stored: Option<&'a FoldedBooking>,
    after: &'a FoldedBooking,
    document: BookingDocument,
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    apply_bookings(conn, events).await?;
    // After the batch's bookings are written: a booking event read before
    // an erasure, in the same batch as it, is scrubbed all the same.
    erase(conn, events).await
}

async fn apply_bookings(
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
        changed.push(Changed {
            key,
            stored: stored.get(key),
            after,
            document,
        });
    }
    save(conn, &changed).await
}

/// Scrubs the client of the bookings each `client.erased` among `events`
/// names: the row shows what folding the booking's events gives now that
/// the client's fields read as erased (so a rebuild writes the same).
async fn erase(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let mut keys: Vec<(&str, Uuid)> = Vec::new();
    let mut first = None;
    for event in events_of::<Erasure>(events) {
        let ErasureEvent::Erased(erased) =
            ErasureEvent::from_payload(&event.event_type, &event.payload)
                .map_err(|e| ProjectionError::poison(event, e))?;
        first.get_or_insert(event);
        keys.extend(
            erased
                .bookings
                .iter()
                .map(|id| (event.tenant.as_str(), *id)),
        );
    }
    let Some(first) = first else {
        return Ok(());
    };
    if keys.is_empty() {
        return Ok(());
    }
    let mut scrubbed = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, _), mut folded) in stored(conn, keys, first).await? {
        if let Some(details) = folded.state.details.as_mut() {
            details.client = Client::erased();
            details.notes = None;
        }
        let Some(document) = folded.document() else {
            continue;
        };
        scrubbed.1.push(document.id);
        scrubbed
            .2
            .push(serde_json::to_string(&document).expect("a booking document serialises"));
        scrubbed.0.push(tenant.as_str().to_owned());
    }
    sqlx::query(
        r#"update bookings b
              set client_name = '', client_email = null, client_phone = null,
                  document = s.document::json
             from unnest($1::text[], $2::uuid[], $3::text[]) as s(tenant_id, booking_id, document)
            where b.tenant_id = s.tenant_id and b.booking_id = s.booking_id"#,
    )
    .bind(&scrubbed.0)
    .bind(&scrubbed.1)
    .bind(&scrubbed.2)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, FoldedBooking>, ProjectionError> {
    // A booking whose first event here is its first event at all is not
    // stored yet: only the others are read. (Were one stored all the
    // same, its status history's first row would collide and the batch
    // would fail rather than pass.)
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    let mut keys: Vec<(&str, Uuid)> = events
        .iter()
        .filter(|e| seen.insert((e.tenant.as_str(), e.stream_id)) && e.stream_version > 1)
        .map(|e| (e.tenant.as_str(), e.stream_id))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    keys.sort_unstable();
    Ok(stored(conn, keys, events[0]).await?.into_iter().collect())
}

/// The stored bookings `keys` name (those that exist), as this projection
/// folds them; a document that does not decode stops it at `at`.
async fn stored(
    conn: &mut PgConnection,
    keys: Vec<(&str, Uuid)>,
    at: &RecordedEvent,
) -> Result<Vec<(Key, FoldedBooking)>, ProjectionError> {
    let (tenants, ids): (Vec<&str>, Vec<Uuid>) = keys.into_iter().unzip();
    // Runtime-checked: unqualified tables, live or staging by search_path.
    let rows: Vec<(String, Json<BookingDocument>)> = sqlx::query_as(
        r#"select b.tenant_id, b.document
             from unnest($1::text[], $2::uuid[]) as k(tenant_id, booking_id)
             join bookings b on b.tenant_id = k.tenant_id and b.booking_id = k.booking_id"#,
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::ColumnDecode { source, .. } => ProjectionError::poison(
            at,
            format!("a read.bookings document does not decode: {source}"),
        ),
        e => e.into(),
    })?;
    let mut loaded = Vec::with_capacity(rows.len());
    for (tenant, Json(document)) in rows {
        let tenant = TenantId::try_from(tenant).map_err(|e| ProjectionError::poison(at, e))?;
        let id = document.id;
        let folded = FoldedBooking::from_document(document).map_err(|e| {
            ProjectionError::poison(at, format!("a read.bookings document is invalid: {e}"))
        })?;
        loaded.push(((tenant, id), folded));
    }
    Ok(loaded)
}

/// The rows one batch writes. Every changed booking's row is written
/// anew: the stored ones are deleted first, by primary key, and all go in
/// by binary `COPY`, with the child rows that differ from the stored ones
/// (those gone deleted by primary key, the new ones copied) and the status
/// changes not stored yet. `COPY` is what makes a rebuild fast: Postgres
/// writes its rows a page at a time and parses nothing.
struct Rows<'a> {
    stored_bookings: KeyRows<'a>,
    bookings: BinaryCopy,
    gone_reservations: KeyRows<'a>,
    reservations: BinaryCopy,
    gone_tasks: KeyRows<'a>,
    tasks: BinaryCopy,
    history: BinaryCopy,
    /// (tenant, resource, booking) of the resources first held.
    held: (Vec<&'a str>, Vec<Uuid>, Vec<Uuid>),
}

// The statements below name their tables without a schema, so that they
// write the live tables or a rebuild's staging ones by `search_path`; the
// deletes are runtime-checked for the same reason.

const COPY_BOOKINGS: &str = "copy bookings (tenant_id, booking_id, title, client_name, \
     client_email, client_phone, starts_at, ends_at, headcount, status, version, requested_at, \
     updated_at, position, series_id, document) from stdin (format binary)";
const COPY_RESERVATIONS: &str = "copy booking_reservations (tenant_id, reservation_id, \
     booking_id, resource_id, starts_at, ends_at, label) from stdin (format binary)";
const COPY_TASKS: &str = "copy booking_tasks (tenant_id, task_id, booking_id, title, due_at, \
     assignee_id, completed) from stdin (format binary)";
const COPY_HISTORY: &str = "copy booking_status_history (tenant_id, booking_id, version, \
     status, changed_at, position) from stdin (format binary)";

impl<'a> Rows<'a> {
    /// What writing `changed` takes.
    fn of(changed: &'a [Changed<'a>]) -> Result<Self, sqlx::Error> {
        let mut rows = Rows {
            stored_bookings: KeyRows::default(),
            bookings: BinaryCopy::new(COPY_BOOKINGS, 16),
            gone_reservations: KeyRows::default(),
            reservations: BinaryCopy::new(COPY_RESERVATIONS, 7),
            gone_tasks: KeyRows::default(),
            tasks: BinaryCopy::new(COPY_TASKS, 7),
            history: BinaryCopy::new(COPY_HISTORY, 6),
            held: Default::default(),
        };
        for c in changed {
            let tenant = c.key.0.as_str();
            let id = c.key.1;
            if c.stored.is_some() {
                rows.stored_bookings.push(tenant, id);
            }
            booking_row(&mut rows.bookings, tenant, id, &c.document)?;
            let (stored_reservations, stored_tasks, stored_history) =
                c.stored.map_or((&[][..], &[][..], 0), |s| {
                    (
                        &s.state.reservations[..],
                        &s.state.tasks[..],
                        s.envelope.status_history.len(),
                    )
                });
            let after = &c.after.state;
            for &resource in &c.after.envelope.held {
                if !stored_reservations
                    .iter()
                    .any(|r| r.resource_id == resource)
                {
                    rows.held.0.push(tenant);
                    rows.held.1.push(resource);
                    rows.held.2.push(id);
                }
            }
            for r in stored_reservations {
                if !after.reservations.contains(r) {
                    rows.gone_reservations.push(tenant, r.reservation_id);
                }
            }
            for r in &after.reservations {
                if !stored_reservations.contains(r) {
                    rows.reservations
                        .row()
                        .value(tenant)?
                        .value(r.reservation_id)?
                        .value(id)?
                        .value(r.resource_id)?
                        .value(r.starts_at)?
                        .value(r.ends_at)?
                        .value(r.label.as_deref())?;
                }
            }
            for t in stored_tasks {
                if !after.tasks.contains(t) {
                    rows.gone_tasks.push(tenant, t.0.task_id);
                }
            }
            for (task, completed) in &after.tasks {
                if !stored_tasks
                    .iter()
                    .any(|(t, done)| t == task && done == completed)
                {
                    rows.tasks
                        .row()
                        .value(tenant)?
                        .value(task.task_id)?
                        .value(id)?
                        .value(task.title.as_str())?
                        .value(task.due_at)?
                        .value(task.assignee_id)?
                        .value(*completed)?;
                }
            }
            for h in &c.document.status_history[stored_history..] {
                rows.history
                    .row()
                    .value(tenant)?
                    .value(id)?
                    .value(h.version)?
                    .value(h.status.as_str())?
                    .value(h.at)?
                    .value(h.position)?;
            }
        }
        Ok(rows)
    }
}

/// Adds the `read.bookings` row of document `d`.
fn booking_row(
    copy: &mut BinaryCopy,
    tenant: &str,
    id: Uuid,
    d: &BookingDocument,
) -> Result<(), sqlx::Error> {
    copy.row()
        .value(tenant)?
        .value(id)?
        .value(d.title.as_str())?
        .value(d.client.name.as_str())?
        .value(d.client.email.as_deref())?
        .value(d.client.phone.as_deref())?
        .value(d.starts_at)?
        .value(d.ends_at)?
        // The domain caps headcounts far below i32::MAX.
        .value(i32::try_from(d.headcount).unwrap_or(i32::MAX))?
        .value(d.status.as_str())?
        .value(d.version)?
        .value(d.requested_at)?
        .value(d.updated_at)?
        .value(d.position)?
        .value(d.series_id)?
        // The document as JSON text (column `json`: stored as written).
        // Only maps with non-string keys fail to serialise; it has none.
        .value(serde_json::to_string(d).expect("a booking document serialises"))?;
    Ok(())
}

/// Rows to delete, by their primary key (tenant, row id): the primary key
/// is the one index a rebuild's staging tables have while they load.
#[derive(Default)]
struct KeyRows<'a> {
    tenant: Vec<&'a str>,
    id: Vec<Uuid>,
}

impl<'a> KeyRows<'a> {
    fn push(&mut self, tenant: &'a str, id: Uuid) {
        self.tenant.push(tenant);
        self.id.push(id);
    }
}

async fn save(conn: &mut PgConnection, changed: &[Changed<'_>]) -> Result<(), ProjectionError> {
    let rows = Rows::of(changed)?;
    delete_by_key(
        conn,
        &rows.stored_bookings,
        r#"delete from bookings b
            using unnest($1::text[], $2::uuid[]) as k(tenant_id, booking_id)
            where b.tenant_id = k.tenant_id and b.booking_id = k.booking_id"#,
    )
    .await?;
    rows.bookings.send(conn).await?;
    delete_by_key(
        conn,
        &rows.gone_reservations,
        r#"delete from booking_reservations r
            using unnest($1::text[], $2::uuid[]) as k(tenant_id, reservation_id)
            where r.tenant_id = k.tenant_id and r.reservation_id = k.reservation_id"#,
    )
    .await?;
    rows.reservations.send(conn).await?;
    delete_by_key(
        conn,
        &rows.gone_tasks,
        r#"delete from booking_tasks t
            using unnest($1::text[], $2::uuid[]) as k(tenant_id, task_id)
            where t.tenant_id = k.tenant_id and t.task_id = k.task_id"#,
    )
    .await?;
    rows.tasks.send(conn).await?;
    rows.history.send(conn).await?;
    if !rows.held.0.is_empty() {
        sqlx::query(
            r#"insert into resource_bookings (tenant_id, resource_id, booking_id)
               select * from unnest($1::text[], $2::uuid[], $3::uuid[])
               on conflict do nothing"#,
        )
        .bind(&rows.held.0)
        .bind(&rows.held.1)
        .bind(&rows.held.2)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes the rows `keys` name with `delete` (which takes the
/// tenants and the row ids as two arrays).
async fn delete_by_key(
    conn: &mut PgConnection,
    keys: &KeyRows<'_>,
    delete: &'static str,
) -> Result<(), ProjectionError> {
    if keys.id.is_empty() {
        return Ok(());
    }
    sqlx::query(delete)
        .bind(&keys.tenant)
        .bind(&keys.id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) mod as_of;

#[cfg(test)]
mod tests;
