//! Finding a time for several resources, and a pool's availability
//! (SPEC §12): queries answered by the write side's own rule over what the
//! resources hold now ([`Store::candidates`], the read the conflict check
//! makes), so that a candidate offered books as it is unless something
//! changed since, and a start left out would be refused.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use muster_domain::TenantId;
use muster_domain::find_time::{self, Candidate, Found, Reason, Requirement, Search};
use muster_domain::pool::{MemberLoad, Strategy};
use muster_domain::time::TimeRange;
use muster_store::pools::PoolMembers;
use muster_store::{Store, StoreError};
use tracing::Instrument;
use uuid::Uuid;

use crate::{App, AppError, Refusal};

/// Most distinct resources one question weighs (pools counted by their
/// members).
pub const MAX_RESOURCES: usize = 500;

/// A query's answer: what it found, or why the question is refused, or a
/// technical failure.
pub type QueryAnswer<T> = Result<Result<T, Refusal>, AppError>;

/// What one requirement of a find-time asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// This resource.
    Resource(Uuid),
    /// `count` distinct members of a pool.
    Pool {
        /// The pool.
        pool_id: Uuid,
        /// How many members.
        count: u32,
    },
    /// `count` of these resources.
    AnyOf {
        /// The resources.
        resource_ids: Vec<Uuid>,
        /// How many of them.
        count: u32,
    },
}

/// A find-time question.
#[derive(Debug, Clone)]
pub struct FindTime {
    /// Where the ranges may lie.
    pub window: TimeRange,
    /// How long each is.
    pub duration: Duration,
    /// Starts are the window's start plus whole multiples of this.
    pub granularity: Duration,
    /// Most candidates answered.
    pub limit: usize,
    /// The booking's headcount, checked against seats.
    pub headcount: Option<u32>,
    /// What must be met at once.
    pub requirements: Vec<Need>,
    /// Resources that would be good to have.
    pub optional: Vec<Uuid>,
    /// How many of `optional` must be free.
    pub min_optional: usize,
}

/// The earliest candidates, or why nothing fits in the window.
pub type FindTimeAnswer = Result<Vec<Found>, Vec<Reason>>;

/// A requirement's resources, resolved, with where the request named each.
struct Resolved {
    members: Vec<Uuid>,
    count: usize,
    pool: Option<PoolMembers>,
}

impl App {
    /// The earliest ranges where every requirement of `question` is met,
    /// each with the resources that would serve it; or, when none is in
    /// the window, why each requirement never fits.
    pub async fn find_time(
        &self,
        tenant: &TenantId,
        question: &FindTime,
    ) -> QueryAnswer<FindTimeAnswer> {
        let span = tracing::info_span!(
            "find_time",
            requirements = question.requirements.len(),
            resources = tracing::field::Empty,
        );
        self.find_time_in(tenant, question).instrument(span).await
    }

    async fn find_time_in(
        &self,
        tenant: &TenantId,
        question: &FindTime,
    ) -> QueryAnswer<FindTimeAnswer> {
        let started = std::time::Instant::now();
        let mut resolved = Vec::with_capacity(question.requirements.len());
        for (i, need) in question.requirements.iter().enumerate() {
            match resolve(&self.store, tenant, i, need).await? {
                Ok(r) => resolved.push(r),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        let mut ids: Vec<Uuid> = Vec::new();
        for id in resolved
            .iter()
            .flat_map(|r| r.members.iter())
            .chain(&question.optional)
        {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        tracing::Span::current().record("resources", ids.len());
        if ids.len() > MAX_RESOURCES {
            return Ok(Err(Refusal::invalid(
                "requirements",
                format!(
                    "name at most {MAX_RESOURCES} resources in all (a pool counts its members); these name {}",
                    ids.len()
                ),
            )));
        }
        let read = match self.store.candidates(tenant, &ids, question.window).await {
            Ok(read) => read,
            Err(StoreError::UnknownResource(id)) => {
                return Ok(Err(Refusal::invalid(
                    field_naming(question, id),
                    "no such resource",
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let by_id: HashMap<Uuid, Candidate> =
            read.into_iter().map(|c| (c.resource_id, c)).collect();
        let requirements: Vec<Requirement> = resolved
            .iter()
            .map(|r| Requirement {
                candidates: preferred(r, &by_id, question.window),
                count: r.count,
            })
            .collect();
        let optional: Vec<Candidate> = question
            .optional
            .iter()
            .filter_map(|id| by_id.get(id).cloned())
            .collect();
        let search = Search {
            window: question.window,
            duration: question.duration,
            granularity: question.granularity,
            limit: question.limit,
            headcount: question.headcount,
            now: Utc::now(),
        };
        let answer = find_time::find_time(&search, &requirements, &optional, question.min_optional);
        metrics::histogram!("muster_find_time_seconds", "found" => if answer.is_ok() { "yes" } else { "no" })
            .record(started.elapsed().as_secs_f64());
        Ok(Ok(answer))
    }

    /// The ranges of `window` in which at least `count` members of pool
    /// `pool_id` are free at once for `duration`
    /// ([`find_time::free_together`]).
    pub async fn pool_availability(
        &self,
        tenant: &TenantId,
        pool_id: Uuid,
        window: TimeRange,
        duration: Duration,
        count: u32,
    ) -> QueryAnswer<Vec<TimeRange>> {
        let Some(pool) = self.store.pool_members(tenant, pool_id).await? else {
            return Ok(Err(Refusal::NotFound {
                what: "pool".into(),
            }));
        };
        if count == 0 || count as usize > pool.members.len() {
            return Ok(Err(Refusal::invalid(
                "count",
                format!(
                    "must be 1 to {} (the pool has {} members now)",
                    pool.members.len().max(1),
                    pool.members.len()
                ),
            )));
        }
        let candidates = self.store.candidates(tenant, &pool.members, window).await?;
        let search = Search {
            window,
            duration,
            granularity: Duration::minutes(1),
            limit: 0,
            headcount: None,
            now: Utc::now(),
        };
        Ok(Ok(find_time::free_together(
            &search,
            &candidates,
            count as usize,
        )))
    }
}

/// Requirement `i`'s resources, or why it is refused.
async fn resolve(
    store: &Store,
    tenant: &TenantId,
    i: usize,
    need: &Need,
) -> Result<Result<Resolved, Refusal>, AppError> {
    let field = |name: &str| format!("requirements[{i}].{name}");
    Ok(match need {
        Need::Resource(id) => Ok(Resolved {
            members: vec![*id],
            count: 1,
            pool: None,
        }),
        Need::AnyOf {
            resource_ids,
            count,
        } => {
            if resource_ids.is_empty() {
                Err(Refusal::invalid(
                    field("any_of"),
                    "name at least one resource",
                ))
            } else if *count == 0 || *count as usize > resource_ids.len() {
                Err(Refusal::invalid(
                    field("count"),
                    format!(
                        "must be 1 to {} (as many as any_of names)",
                        resource_ids.len()
                    ),
                ))
            } else {
                Ok(Resolved {
                    members: resource_ids.clone(),
                    count: *count as usize,
                    pool: None,
                })
            }
        }
        Need::Pool { pool_id, count } => match store.pool_members(tenant, *pool_id).await? {
            None => Err(Refusal::invalid(field("pool_id"), "no such pool")),
            Some(pool) if *count == 0 || *count as usize > pool.members.len() => {
                Err(Refusal::invalid(
                    field("count"),
                    format!(
                        "must be 1 to {} (the pool has {} members now)",
                        pool.members.len().max(1),
                        pool.members.len()
                    ),
                ))
            }
            Some(pool) => Ok(Resolved {
                members: pool.members.clone(),
                count: *count as usize,
                pool: Some(pool),
            }),
        },
    })
}

/// A requirement's candidates in the order the write side would prefer
/// them: a pool's by its strategy (how booked each is in the window, when
/// the pool last assigned it), the rest as named.
fn preferred(
    resolved: &Resolved,
    by_id: &HashMap<Uuid, Candidate>,
    window: TimeRange,
) -> Vec<Candidate> {
    let order: Vec<Uuid> = match &resolved.pool {
        Some(pool) if pool.strategy != Strategy::First => {
            let loads: Vec<MemberLoad> = resolved
                .members
                .iter()
                .map(|id| MemberLoad {
                    resource_id: *id,
                    booked_minutes: by_id.get(id).map_or(0, |c| minutes_within(&c.held, window)),
                    last_assigned_at: pool.last_assigned.get(id).copied(),
                })
                .collect();
            pool.strategy.order(&loads)
        }
        _ => resolved.members.clone(),
    };
    order
        .into_iter()
        .filter_map(|id| by_id.get(&id).cloned())
        .collect()
}

/// Minutes of `held` inside `window`.
fn minutes_within(held: &[TimeRange], window: TimeRange) -> i64 {
    let clip = |at: DateTime<Utc>| at.clamp(window.starts_at, window.ends_at);
    held.iter()
        .map(|h| (clip(h.ends_at) - clip(h.starts_at)).num_minutes())
        .sum()
}

/// The request's field that named resource `id`.
fn field_naming(question: &FindTime, id: Uuid) -> String {
    for (i, need) in question.requirements.iter().enumerate() {
        match need {
            Need::Resource(r) if *r == id => return format!("requirements[{i}].resource_id"),
            Need::AnyOf { resource_ids, .. } => {
                if let Some(j) = resource_ids.iter().position(|r| *r == id) {
                    return format!("requirements[{i}].any_of[{j}]");
                }
            }
            _ => {}
        }
    }
    question.optional.iter().position(|r| *r == id).map_or_else(
        || "requirements".to_owned(),
        |j| format!("optional[{j}].resource_id"),
    )
}
