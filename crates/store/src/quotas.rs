//! Quotas as the write side keeps them: the `quotas` rows (configuration)
//! and the `quota_charges` that count what each booking and hold adds to
//! a subject's period, written in the command's own transaction under a
//! lock of each (quota, subject, period) it adds to.
//!
//! A tenant without quotas pays nothing: the flag `reservable_resources.
//! quotas` is read with the resource locks the ledger takes anyway, and a
//! command that creates a booking on resources whose flag is off skips
//! every quota statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::booking::{Booking, BookingEvent};
use muster_domain::hold::{Hold, HoldStatus};
use muster_domain::quota::{Charge, ChargeLine, QuotaLimit, QuotaPeriod, QuotaScope, QuotaSpec};
use muster_domain::{Aggregate, DomainError};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::QuotaExceeded;
use crate::event_store::read_streams;
use crate::{Store, StoreError};

/// Advisory-lock class of a (quota, subject, period): the second key is
/// a hash of the four, so a collision only serialises two periods.
const PERIOD_LOCK: i32 = 0x4D51_5554;
/// Advisory-lock class of a tenant's quota definitions.
const TENANT_LOCK: i32 = 0x4D51_5444;

/// A quota as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredQuota {
    /// Its name.
    pub name: String,
    /// Its definition.
    pub spec: QuotaSpec,
    /// When it was first defined.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a subject has used of a quota in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUsage {
    /// The period's first instant.
    pub period_starts_at: DateTime<Utc>,
    /// The instant after it.
    pub period_ends_at: DateTime<Utc>,
    /// Bookings (and unexpired holds) counted.
    pub bookings: i64,
    /// Minutes they book.
    pub minutes: i64,
}

/// A quota defined or redefined, and how many bookings and holds it
/// counted from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Defined {
    /// The quota as stored.
    pub quota: StoredQuota,
    /// Whether it is new (not a redefinition).
    pub created: bool,
    /// Bookings and holds in the current period or later that it counts.
    pub counted: usize,
}

struct QuotaRow {
    name: String,
    scope: String,
    period: String,
    max_bookings: Option<i32>,
    max_minutes: Option<i32>,
    timezone: String,
    subjects: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl QuotaRow {
    fn stored(self) -> Result<StoredQuota, StoreError> {
        let corrupt = |what: &str| StoreError::CorruptRow(format!("quota {}: {what}", self.name));
        let limit = match (self.max_bookings, self.max_minutes) {
            (Some(n), None) => QuotaLimit::Bookings(n.unsigned_abs()),
            (None, Some(m)) => QuotaLimit::Minutes(i64::from(m)),
            _ => return Err(corrupt("its limit")),
        };
        Ok(StoredQuota {
            spec: QuotaSpec {
                scope: QuotaScope::parse(&self.scope).ok_or_else(|| corrupt("its scope"))?,
                period: QuotaPeriod::parse(&self.period).ok_or_else(|| corrupt("its period"))?,
                limit,
                timezone: self.timezone.parse().map_err(|_| corrupt("its zone"))?,
                subjects: self.subjects,
            },
            name: self.name,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn limit_columns(limit: QuotaLimit) -> (Option<i32>, Option<i32>) {
    match limit {
        QuotaLimit::Bookings(n) => (Some(i32::try_from(n).unwrap_or(i32::MAX)), None),
        QuotaLimit::Minutes(m) => (None, Some(i32::try_from(m).unwrap_or(i32::MAX))),
    }
}

impl Store {
    /// Defines quota `name` as `spec` (or redefines it), and counts what
    /// it limits from the current period on: the bookings and holds that
    /// count now, read from their own events in the same transaction.
    /// Commands that book wait for it (it writes the tenant's resource
    /// rows), so nothing slips between the count and the limit.
    /// Subjects that do not exist in the tenant are refused.
    pub async fn define_quota(
        &self,
        tenant: &TenantId,
        name: &str,
        spec: &QuotaSpec,
    ) -> Result<Defined, StoreError> {
        let mut attempt = 1;
        loop {
            match self.define_quota_once(tenant, name, spec).await {
                Err(StoreError::Database(e)) if crate::db::is_transient(&e) && attempt < 3 => {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn define_quota_once(
        &self,
        tenant: &TenantId,
        name: &str,
        spec: &QuotaSpec,
    ) -> Result<Defined, StoreError> {
        let mut tx = self.pool().begin().await?;
        check_subjects(&mut tx, tenant, spec).await?;
        lock_tenant(&mut tx, tenant).await?;
        // The tenant's resources first, in the ledger's order: every
        // command reserving one has committed (its charges are counted
        // below) or waits for this transaction, and then reads the flag
        // on.
        lock_resources(&mut tx, tenant).await?;
        sqlx::query!(
            "update reservable_resources set quotas = true where tenant_id = $1 and not quotas",
            tenant.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        let (max_bookings, max_minutes) = limit_columns(spec.limit);
        let row = sqlx::query_as!(
            QuotaRow,
            r#"insert into quotas (tenant_id, name, scope, period, max_bookings, max_minutes,
                                   timezone, subjects)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               on conflict (tenant_id, name) do update
                  set scope = excluded.scope, period = excluded.period,
                      max_bookings = excluded.max_bookings, max_minutes = excluded.max_minutes,
                      timezone = excluded.timezone, subjects = excluded.subjects,
                      updated_at = now()
               returning name, scope, period, max_bookings, max_minutes, timezone, subjects,
                         created_at, updated_at"#,
            tenant.as_str(),
            name,
            spec.scope.as_str(),
            spec.period.as_str(),
            max_bookings,
            max_minutes,
            spec.timezone.name(),
            &spec.subjects,
        )
        .fetch_one(&mut *tx)
        .await?;
        let created = row.created_at == row.updated_at;
        sqlx::query!(
            "delete from quota_charges where tenant_id = $1 and quota_name = $2",
            tenant.as_str(),
            name,
        )
        .execute(&mut *tx)
        .await?;
        let counted = count_existing(&mut tx, self.secret_key(), tenant, name, spec).await?;
        tx.commit().await?;
        Ok(Defined {
            quota: row.stored()?,
            created,
            counted,
        })
    }

    /// Removes quota `name` (and what it counted); `false`: no such quota.
    pub async fn remove_quota(&self, tenant: &TenantId, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_tenant(&mut tx, tenant).await?;
        // Commands that read the quota finish writing its charges first.
        lock_resources(&mut tx, tenant).await?;
        let removed = sqlx::query!(
            "delete from quotas where tenant_id = $1 and name = $2",
            tenant.as_str(),
            name,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let left = sqlx::query_scalar!(
            r#"select exists(select 1 from quotas where tenant_id = $1) as "left!""#,
            tenant.as_str(),
        )
        .fetch_one(&mut *tx)
        .await?;
        if !left {
            sqlx::query!(
                "update reservable_resources set quotas = false where tenant_id = $1 and quotas",
                tenant.as_str(),
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// The tenant's quotas, by name.
    pub async fn list_quotas(&self, tenant: &TenantId) -> Result<Vec<StoredQuota>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        quotas_of(&mut conn, tenant.as_str()).await
    }

    /// Quota `name`, if defined.
    pub async fn find_quota(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<StoredQuota>, StoreError> {
        let row = sqlx::query_as!(
            QuotaRow,
            r#"select name, scope, period, max_bookings, max_minutes, timezone, subjects,
                      created_at, updated_at
                 from quotas where tenant_id = $1 and name = $2"#,
            tenant.as_str(),
            name,
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(QuotaRow::stored).transpose()
    }

    /// What `subject` has used of `quota` in the period that contains `at`.
    pub async fn quota_usage(
        &self,
        tenant: &TenantId,
        quota: &StoredQuota,
        subject: &str,
        at: DateTime<Utc>,
    ) -> Result<QuotaUsage, StoreError> {
        let (start, end) = quota.spec.period.containing(at, quota.spec.timezone);
        let used = sqlx::query!(
            r#"select count(*) as "bookings!", coalesce(sum(minutes), 0)::int8 as "minutes!"
                 from quota_charges
                where tenant_id = $1 and quota_name = $2 and subject = $3 and period_start = $4
                  and (expires_at is null or expires_at > now())"#,
            tenant.as_str(),
            quota.name,
            subject,
            start,
        )
        .fetch_one(self.pool())
        .await?;
        Ok(QuotaUsage {
            period_starts_at: start,
            period_ends_at: end,
            bookings: used.bookings,
            minutes: used.minutes,
        })
    }
}

async fn quotas_of(conn: &mut PgConnection, tenant: &str) -> Result<Vec<StoredQuota>, StoreError> {
    sqlx::query_as!(
        QuotaRow,
        r#"select name, scope, period, max_bookings, max_minutes, timezone, subjects,
                  created_at, updated_at
             from quotas where tenant_id = $1 order by name"#,
        tenant,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(QuotaRow::stored)
    .collect()
}

/// Takes the tenant's quota-definition lock: definitions run one at a
/// time, and a resource registered meanwhile reads the flag afterwards.
async fn lock_tenant(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), StoreError> {
    sqlx::query!(
        "select pg_advisory_xact_lock($1, hashtext($2))",
        TENANT_LOCK,
        tenant.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the shared side of each tenant's definition lock (for resources
/// being registered), in one order.
pub(crate) async fn share_definitions(
    conn: &mut PgConnection,
    tenants: &[&str],
) -> Result<(), StoreError> {
    let mut tenants = tenants.to_vec();
    tenants.sort_unstable();
    tenants.dedup();
    sqlx::query!(
        r#"select count(pg_advisory_xact_lock_shared($1, hashtext(t)))
             from unnest($2::text[]) with ordinality as k(t, n)"#,
        TENANT_LOCK,
        &tenants as &[&str],
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Locks the tenant's resource rows in the ledger's order (by id): the
/// commands reserving them finish first, and later ones wait.
async fn lock_resources(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), StoreError> {
    sqlx::query!(
        r#"select count(*) as "locked!" from (
               select 1 from reservable_resources where tenant_id = $1
                order by resource_id for no key update) r"#,
        tenant.as_str(),
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Whether the tenant has quotas, read after the shared side of the
/// tenant's definition lock (for a command that locks no resource, and a
/// resource being registered).
pub(crate) async fn tenant_has_quotas(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<bool, StoreError> {
    sqlx::query!(
        "select pg_advisory_xact_lock_shared($1, hashtext($2))",
        TENANT_LOCK,
        tenant,
    )
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from quotas where tenant_id = $1) as "some!""#,
        tenant,
    )
    .fetch_one(conn)
    .await?)
}

/// Removes what `charge_ids` counted for (they stopped counting).
pub(crate) async fn forget(
    conn: &mut PgConnection,
    tenant: &str,
    charge_ids: &[Uuid],
) -> Result<(), StoreError> {
    sqlx::query!(
        "delete from quota_charges where tenant_id = $1 and charge_id = any($2)",
        tenant,
        charge_ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Refuses subjects that name no resource, pool or key of the tenant.
async fn check_subjects(
    conn: &mut PgConnection,
    tenant: &TenantId,
    spec: &QuotaSpec,
) -> Result<(), StoreError> {
    if spec.scope == QuotaScope::Client {
        return Ok(());
    }
    // Subjects of the other scopes are ids (the domain keeps them in their
    // canonical form): each is one primary-key probe of its scope's table.
    let ids: Vec<Uuid> = spec
        .subjects
        .iter()
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect();
    let known: Vec<String> = sqlx::query_scalar!(
        r#"select s.id::text as "id!" from unnest($3::uuid[]) as s(id)
            where ($2 = 'resource' and exists(select 1 from reservable_resources r
                                               where r.tenant_id = $1 and r.resource_id = s.id))
               or ($2 = 'pool' and exists(select 1 from pools p
                                           where p.tenant_id = $1 and p.pool_id = s.id))
               or ($2 = 'key' and exists(select 1 from api_keys k
                                          where k.tenant_id = $1 and k.key_id = s.id))"#,
        tenant.as_str(),
        spec.scope.as_str(),
        &ids,
    )
    .fetch_all(conn)
    .await?;
    let errors: Vec<_> = spec
        .subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| !known.contains(s))
        .map(|(i, s)| {
            muster_domain::FieldError::new(
                format!("subjects[{i}]"),
                format!("no {} {s}", spec.scope.as_str()),
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Invalid(errors).into())
    }
}

/// Counts, under quota `name`, the bookings and holds that count now and
/// start in the current period or later: each read from its own events.
/// Answers how many it counted.
async fn count_existing(
    conn: &mut PgConnection,
    secret: Option<&crate::secret::SecretKey>,
    tenant: &TenantId,
    name: &str,
    spec: &QuotaSpec,
) -> Result<usize, StoreError> {
    let now = Utc::now();
    let (current, _) = spec.period.containing(now, spec.timezone);
    // What holds time from the current period on: bookings' reservations
    // and unexpired holds (a booking without reservations is found by its
    // events only, which would mean reading every booking; it is counted
    // from its next change).
    // FOR SHARE: a command releasing or moving one of these rows right
    // now is waited for (and its booking read as it left it), and one
    // that comes later waits for this definition and then finds the
    // charges to remove.
    let mut rows = sqlx::query!(
        r#"select booking_id, (reservation_id = booking_id) as "hold!"
             from reservations
            where tenant_id = $1 and ends_at > $2 and calendar_id is null
              and (expires_at is null or expires_at > now())
              for share"#,
        tenant.as_str(),
        current,
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_unstable_by_key(|r| r.booking_id);
    rows.dedup_by_key(|r| r.booking_id);
    let (holds, bookings): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.hold);
    let bookings: Vec<Uuid> = bookings.into_iter().map(|r| r.booking_id).collect();
    let holds: Vec<Uuid> = holds.into_iter().map(|r| r.booking_id).collect();
    let mut charges: Vec<(Uuid, String, Charge)> = Vec::new();
    for chunk in bookings.chunks(1_000) {
        for (id, actor, events) in
            read_streams::<BookingEvent>(conn, secret, tenant, Booking::STREAM_TYPE, chunk).await?
        {
            if let Some(charge) = Booking::from_events(events.iter()).charge() {
                charges.push((id, actor, charge));
            }
        }
    }
    for chunk in holds.chunks(1_000) {
        for (id, actor, events) in read_streams::<muster_domain::hold::HoldEvent>(
            conn,
            secret,
            tenant,
            Hold::STREAM_TYPE,
            chunk,
        )
        .await?
        {
            let hold = Hold::from_events(events.iter());
            if hold.status(now) == Some(HoldStatus::Active)
                && let Some(spec) = &hold.spec
            {
                charges.push((id, actor, spec.charge()));
            }
        }
    }
    let mut rows = ChargeRows::default();
    for (id, actor, charge) in &charges {
        for line in spec.lines(charge, actor) {
            if line.period_start >= current {
                rows.push(name, *id, actor, charge.expires_at, &line);
            }
        }
    }
    rows.insert(conn, tenant.as_str()).await?;
    Ok(charges.len())
}

/// Charge rows to insert, column by column.
#[derive(Default)]
struct ChargeRows {
    quotas: Vec<String>,
    subjects: Vec<String>,
    periods: Vec<DateTime<Utc>>,
    charge_ids: Vec<Uuid>,
    minutes: Vec<i32>,
    keys: Vec<String>,
    expiries: Vec<Option<DateTime<Utc>>>,
}

impl ChargeRows {
    fn push(
        &mut self,
        quota: &str,
        charge_id: Uuid,
        key: &str,
        expires_at: Option<DateTime<Utc>>,
        line: &ChargeLine,
    ) {
        self.quotas.push(quota.to_owned());
        self.subjects.push(line.subject.clone());
        self.periods.push(line.period_start);
        self.charge_ids.push(charge_id);
        self.minutes
            .push(i32::try_from(line.minutes).unwrap_or(i32::MAX));
        self.keys.push(key.to_owned());
        self.expiries.push(expires_at);
    }

    async fn insert(self, conn: &mut PgConnection, tenant: &str) -> Result<(), StoreError> {
        if self.quotas.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            r#"insert into quota_charges
                   (tenant_id, quota_name, subject, period_start, charge_id, minutes, key_id,
                    expires_at)
               select $1, * from unnest($2::text[], $3::text[], $4::timestamptz[], $5::uuid[],
                                        $6::int4[], $7::text[], $8::timestamptz[])
               on conflict do nothing"#,
            tenant,
            &self.quotas,
            &self.subjects,
            &self.periods,
            &self.charge_ids,
            &self.minutes,
            &self.keys,
            &self.expiries as &[Option<DateTime<Utc>>],
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// One booking's or hold's charge as a command leaves it: `None` when it
/// stops counting.
pub(crate) struct Recharge<'a> {
    /// The booking or hold.
    pub charge_id: Uuid,
    /// What it counts for now.
    pub charge: Option<&'a Charge>,
}

/// Applies one command's recharges in its transaction: what the charges
/// counted before is removed, what they count now is added, and a line
/// that adds to a (quota, subject, period) the charge did not count in
/// before must fit the quota's limit, counted under that period's lock
/// with every line of the command before it. `key` is the command's API
/// key (a charge made earlier keeps its own). Refuses with the first
/// quota passed; then nothing of it is written.
pub(crate) async fn recharge(
    conn: &mut PgConnection,
    tenant: &str,
    key: &str,
    recharges: &[Recharge<'_>],
) -> Result<(), StoreError> {
    let quotas: Vec<StoredQuota> = quotas_of(conn, tenant).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = recharges.iter().map(|r| r.charge_id).collect();
    let before = sqlx::query!(
        r#"delete from quota_charges where tenant_id = $1 and charge_id = any($2)
           returning quota_name, subject, period_start, charge_id, key_id, minutes"#,
        tenant,
        &ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    // What the command's charges counted in each (quota, subject, period)
    // before it: minutes by period, summed over the charges.
    let mut counted_before: HashMap<(String, String, DateTime<Utc>), i64> = HashMap::new();
    for r in &before {
        *counted_before
            .entry((r.quota_name.clone(), r.subject.clone(), r.period_start))
            .or_default() += i64::from(r.minutes);
    }
    let keys_before: HashMap<Uuid, String> = before
        .into_iter()
        .map(|r| (r.charge_id, r.key_id))
        .collect();

    let mut rows = ChargeRows::default();
    // Lines to check: (quota index, charge id, line).
    let mut checked: Vec<(usize, Uuid, ChargeLine)> = Vec::new();
    for recharge in recharges {
        let Some(charge) = recharge.charge else {
            continue;
        };
        let charge_key = keys_before
            .get(&recharge.charge_id)
            .map_or(key, String::as_str);
        for (q, quota) in quotas.iter().enumerate() {
            for line in quota.spec.lines(charge, charge_key) {
                rows.push(
                    &quota.name,
                    recharge.charge_id,
                    charge_key,
                    charge.expires_at,
                    &line,
                );
                let period = (quota.name.clone(), line.subject.clone(), line.period_start);
                // A period it enters is checked; one it stays in only when
                // it books more hours there than before (a count is
                // unchanged by a move within its period).
                let check = match counted_before.get(&period) {
                    None => true,
                    Some(minutes) => {
                        matches!(quota.spec.limit, QuotaLimit::Minutes(_))
                            && line.minutes > *minutes
                    }
                };
                if check {
                    checked.push((q, recharge.charge_id, line));
                }
            }
        }
    }
    if !checked.is_empty() {
        check_limits(conn, tenant, quotas, &checked).await?;
    }
    rows.insert(conn, tenant).await
}

/// The tenant's quotas and what the periods some lines add to hold: what
/// [`QuotaBook::admit`] weighs each line against, one after another.
#[derive(Debug, Clone, Default)]
pub struct QuotaBook {
    quotas: Vec<StoredQuota>,
    /// (quota, subject, period start) → (bookings, minutes).
    usage: HashMap<(String, String, DateTime<Utc>), (i64, i64)>,
}

impl QuotaBook {
    /// Whether the tenant has no quotas (nothing is ever refused).
    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    /// Counts `charge` (made in the name of `key`) under every quota, or
    /// answers the first quota it would pass; then nothing of it counts.
    pub fn admit(
        &mut self,
        charge_id: Uuid,
        charge: &Charge,
        key: &str,
    ) -> Result<(), Box<QuotaExceeded>> {
        let lines: Vec<(usize, ChargeLine)> = self
            .quotas
            .iter()
            .enumerate()
            .flat_map(|(q, quota)| {
                quota
                    .spec
                    .lines(charge, key)
                    .into_iter()
                    .map(move |l| (q, l))
            })
            .collect();
        let before = self.usage.clone();
        for (q, line) in &lines {
            if let Err(e) = self.admit_line(*q, charge_id, line) {
                self.usage = before;
                return Err(e);
            }
        }
        Ok(())
    }

    fn admit_line(
        &mut self,
        q: usize,
        charge_id: Uuid,
        line: &ChargeLine,
    ) -> Result<(), Box<QuotaExceeded>> {
        let quota = &self.quotas[q];
        let key = (quota.name.clone(), line.subject.clone(), line.period_start);
        let (bookings, minutes) = self.usage.entry(key).or_default();
        if !quota.spec.admits(*bookings, *minutes, line) {
            let (start, end) = quota
                .spec
                .period
                .containing(line.period_start, quota.spec.timezone);
            let (max_bookings, max_hours) = match quota.spec.limit {
                QuotaLimit::Bookings(n) => (Some(n), None),
                QuotaLimit::Minutes(m) => (None, Some(m as f64 / 60.0)),
            };
            return Err(Box::new(QuotaExceeded {
                quota: quota.name.clone(),
                scope: quota.spec.scope,
                subject: line.subject.clone(),
                period_starts_at: start,
                period_ends_at: end,
                max_bookings,
                max_hours,
                used_bookings: *bookings,
                used_hours: *minutes as f64 / 60.0,
                charge_id,
            }));
        }
        *bookings += 1;
        *minutes += line.minutes;
        Ok(())
    }

    /// Reads what each (quota, subject, period) of `periods` holds now.
    async fn count(
        conn: &mut PgConnection,
        tenant: &str,
        quotas: Vec<StoredQuota>,
        periods: &[(String, String, DateTime<Utc>)],
    ) -> Result<Self, StoreError> {
        let names: Vec<&str> = periods.iter().map(|p| p.0.as_str()).collect();
        let subjects: Vec<&str> = periods.iter().map(|p| p.1.as_str()).collect();
        let starts: Vec<DateTime<Utc>> = periods.iter().map(|p| p.2).collect();
        let used = sqlx::query!(
            r#"select k.n as "n!", count(c.charge_id) as "bookings!",
                      coalesce(sum(c.minutes), 0)::int8 as "minutes!"
                 from unnest($2::text[], $3::text[], $4::timestamptz[])
                      with ordinality as k(quota, subject, period, n)
                 left join quota_charges c
                   on c.tenant_id = $1 and c.quota_name = k.quota and c.subject = k.subject
                  and c.period_start = k.period
                  and (c.expires_at is null or c.expires_at > now())
                group by k.n order by k.n"#,
            tenant,
            &names as &[&str],
            &subjects as &[&str],
            &starts,
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self {
            quotas,
            usage: periods
                .iter()
                .cloned()
                .zip(used)
                .map(|(p, u)| (p, (u.bookings, u.minutes)))
                .collect(),
        })
    }
}

impl Store {
    /// The tenant's quotas with what the periods `charges` (made in the
    /// name of `key`) would add to hold now, read without locks: for a
    /// decision that leaves out what a quota would refuse (a series
    /// skipping occurrences). The commit checks every line again under
    /// its period's lock.
    pub async fn quota_book(
        &self,
        tenant: &TenantId,
        key: &str,
        charges: &[&Charge],
    ) -> Result<QuotaBook, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let quotas = quotas_of(&mut conn, tenant.as_str()).await?;
        if quotas.is_empty() {
            return Ok(QuotaBook::default());
        }
        let mut periods: Vec<(String, String, DateTime<Utc>)> = charges
            .iter()
            .flat_map(|charge| {
                quotas.iter().flat_map(move |q| {
                    q.spec
                        .lines(charge, key)
                        .into_iter()
                        .map(move |l| (q.name.clone(), l.subject, l.period_start))
                })
            })
            .collect();
        periods.sort_unstable();
        periods.dedup();
        QuotaBook::count(&mut conn, tenant.as_str(), quotas, &periods).await
    }
}

/// Locks each (quota, subject, period) that `checked` adds to, in one
/// order, counts what each holds, and refuses the first line that would
/// pass its quota's limit (lines of one period count one after another).
async fn check_limits(
    conn: &mut PgConnection,
    tenant: &str,
    quotas: Vec<StoredQuota>,
    checked: &[(usize, Uuid, ChargeLine)],
) -> Result<(), StoreError> {
    let mut periods: Vec<(String, String, DateTime<Utc>)> = checked
        .iter()
        .map(|(q, _, l)| (quotas[*q].name.clone(), l.subject.clone(), l.period_start))
        .collect();
    periods.sort_unstable();
    periods.dedup();
    let names: Vec<&str> = periods.iter().map(|p| p.0.as_str()).collect();
    let subjects: Vec<&str> = periods.iter().map(|p| p.1.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = periods.iter().map(|p| p.2).collect();
    // Locked in the sorted order of the unnest, before anything is
    // counted: the count, a later statement, sees every charge committed
    // by the transactions waited for.
    sqlx::query!(
        r#"select count(pg_advisory_xact_lock($1, hashtext($2 || '/' || k.quota || '/'
                                                         || k.subject || '/' || k.period::text)))
             from unnest($3::text[], $4::text[], $5::timestamptz[])
                  with ordinality as k(quota, subject, period, n)"#,
        PERIOD_LOCK,
        tenant,
        &names as &[&str],
        &subjects as &[&str],
        &starts,
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut book = QuotaBook::count(conn, tenant, quotas, &periods).await?;
    for (q, charge_id, line) in checked {
        if let Err(exceeded) = book.admit_line(*q, *charge_id, line) {
            metrics::counter!("muster_quota_refusals_total", "scope" => exceeded.scope.as_str())
                .increment(1);
            return Err(StoreError::QuotaExceeded(exceeded));
        }
    }
    Ok(())
}
