//! Finding a time for several resources (SPEC §12): parsed here, answered
//! by the application layer on the write side's rule.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use muster_app::find_time::{FindTime, Need};
use muster_domain::FieldError;
use muster_domain::time::TimeRange;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::extract::QueryBody;
use crate::read::{MAX_DAYS, duration};
use crate::{ApiError, AppState};

/// The find-time route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(find_time))
}

/// Most candidates one answer gives.
pub(crate) const MAX_LIMIT: u32 = 100;
/// Most requirements (or optional resources) one question names.
pub(crate) const MAX_REQUIREMENTS: usize = 50;

/// When can these resources meet?
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindTimeBody {
    /// How long: minutes (`120`) or ISO 8601 (`PT2H`), at most the window.
    duration: String,
    /// Start of the window (RFC 3339 with offset).
    from: DateTime<Utc>,
    /// End of the window, after `from` and at most 62 days later.
    to: DateTime<Utc>,
    /// Starts are `from` plus whole multiples of this (default `PT15M`).
    granularity: Option<String>,
    /// Most candidates answered (default 10).
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The booking's headcount, checked against each resource's seats.
    headcount: Option<u32>,
    /// What must be met at once: a resource, `count` members of a pool, or
    /// `count` of `any_of`; distinct resources for distinct requirements.
    requirements: Vec<RequirementBody>,
    /// Resources that would be good to have.
    #[serde(default)]
    optional: Vec<OptionalBody>,
    /// How many of `optional` must be free (default 0).
    #[serde(default)]
    min_optional: u32,
}

/// One requirement: exactly one of `resource_id`, `pool_id` or `any_of`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementBody {
    /// This resource.
    resource_id: Option<Uuid>,
    /// Members of this pool.
    pool_id: Option<Uuid>,
    /// Some of these resources.
    any_of: Option<Vec<Uuid>>,
    /// How many members (pool or `any_of`; default 1).
    count: Option<u32>,
}

/// An optional resource.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionalBody {
    /// The resource.
    resource_id: Uuid,
}

/// The earliest candidates, or why nothing fits.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindTimeAnswer {
    /// The earliest ranges where every requirement is met, earliest first.
    candidates: Vec<CandidateView>,
    /// When there is no candidate: why, per requirement.
    reasons: Vec<ReasonView>,
}

/// A range where every requirement is met, and who would serve it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateView {
    /// Start.
    starts_at: DateTime<Utc>,
    /// End (exclusive).
    ends_at: DateTime<Utc>,
    /// The resources to reserve, each with the requirement it serves: a
    /// booking of them for the range is admitted unless something changed.
    reservations: Vec<CandidateReservation>,
    /// The optional resources free then.
    optional_free: Vec<Uuid>,
}

/// One resource of a candidate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateReservation {
    /// The resource.
    resource_id: Uuid,
    /// The index of the requirement it serves.
    requirement: usize,
}

/// Why a requirement never fits in the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonView {
    /// The requirement's index; absent for the optional resources, and for
    /// requirements that each fit but never together.
    #[serde(skip_serializing_if = "Option::is_none")]
    requirement: Option<usize>,
    /// `outside-working-hours`, `reservation-conflict`, `seats-exceeded`,
    /// `too-soon`, `too-far-ahead`, `resource-retired` or `not-together`.
    reason: &'static str,
    /// In words, with how many candidates each reason held back.
    detail: String,
}

impl FindTimeBody {
    /// The question, or every field that is wrong.
    fn question(self) -> Result<FindTime, ApiError> {
        let mut errors = Vec::new();
        let window = TimeRange::new(self.from, self.to, "");
        let window = match window {
            Ok(w) if w.ends_at - w.starts_at > Duration::days(MAX_DAYS) => {
                errors.push(FieldError::new(
                    "to",
                    format!("the window must not exceed {MAX_DAYS} days"),
                ));
                None
            }
            Ok(w) => Some(w),
            Err(_) => {
                errors.push(FieldError::new("to", "must be after from"));
                None
            }
        };
        let length = match duration("duration", &self.duration) {
            Ok(d) => Some(d),
            Err(ApiError::Validation(mut e)) => {
                errors.append(&mut e);
                None
            }
            Err(e) => return Err(e),
        };
        let granularity = match self
            .granularity
            .as_deref()
            .map(|g| duration("granularity", g))
        {
            None => Some(Duration::minutes(15)),
            Some(Ok(g)) if g <= Duration::days(1) => Some(g),
            Some(Ok(_)) => {
                errors.push(FieldError::new("granularity", "must be at most P1D"));
                None
            }
            Some(Err(ApiError::Validation(mut e))) => {
                errors.append(&mut e);
                None
            }
            Some(Err(e)) => return Err(e),
        };
        if let (Some(w), Some(d)) = (window, length)
            && d > w.ends_at - w.starts_at
        {
            errors.push(FieldError::new(
                "duration",
                "must not be longer than the window",
            ));
        }
        let limit = self.limit.unwrap_or(10);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push(FieldError::new(
                "limit",
                format!("must be 1 to {MAX_LIMIT}"),
            ));
        }
        if self.requirements.is_empty() || self.requirements.len() > MAX_REQUIREMENTS {
            errors.push(FieldError::new(
                "requirements",
                format!("name 1 to {MAX_REQUIREMENTS} requirements"),
            ));
        }
        if self.optional.len() > MAX_REQUIREMENTS {
            errors.push(FieldError::new(
                "optional",
                format!("name at most {MAX_REQUIREMENTS} resources"),
            ));
        }
        if self.min_optional as usize > self.optional.len() {
            errors.push(FieldError::new(
                "min_optional",
                "must not exceed how many optional resources there are",
            ));
        }
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for (i, r) in self.requirements.into_iter().enumerate() {
            match r.need(i) {
                Ok(need) => requirements.push(need),
                Err(e) => errors.push(e),
            }
        }
        match (window, length, granularity) {
            (Some(window), Some(duration), Some(granularity)) if errors.is_empty() => {
                Ok(FindTime {
                    window,
                    duration,
                    granularity,
                    limit: limit as usize,
                    headcount: self.headcount,
                    requirements,
                    optional: self.optional.into_iter().map(|o| o.resource_id).collect(),
                    min_optional: self.min_optional as usize,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

impl RequirementBody {
    /// What it needs, or the first thing wrong with it.
    fn need(self, i: usize) -> Result<Need, FieldError> {
        let at = |name: &str| format!("requirements[{i}].{name}");
        let count = self.count.unwrap_or(1);
        if count == 0 {
            return Err(FieldError::new(at("count"), "must be at least 1"));
        }
        match (self.resource_id, self.pool_id, self.any_of) {
            (Some(resource_id), None, None) if self.count.is_none() => {
                Ok(Need::Resource(resource_id))
            }
            (Some(_), None, None) => Err(FieldError::new(
                at("count"),
                "only a pool or any_of takes a count",
            )),
            (None, Some(pool_id), None) => Ok(Need::Pool { pool_id, count }),
            (None, None, Some(resource_ids)) => {
                if let Some(j) =
                    (1..resource_ids.len()).find(|&j| resource_ids[..j].contains(&resource_ids[j]))
                {
                    return Err(FieldError::new(
                        format!("{}[{j}]", at("any_of")),
                        "named twice",
                    ));
                }
                Ok(Need::AnyOf {
                    resource_ids,
                    count,
                })
            }
            _ => Err(FieldError::new(
                format!("requirements[{i}]"),
                "name exactly one of resource_id, pool_id or any_of",
            )),
        }
    }
}

/// The earliest ranges in a window where every requirement is met at once
/// (a resource; `count` members of a pool; `count` of `any_of`), each with
/// the resources that would serve it, by the same rule the write side
/// admits reservations by (working hours, capacity, buffers, seats,
/// notice, horizon, holds): a candidate books as it is unless something
/// changed since. When there is none, `reasons` say per requirement why it
/// never fits in the window. Up to 500 resources in all.
#[utoipa::path(post, path = "/v1/find-time", tag = "availability",
    request_body = FindTimeBody,
    responses((status = 200, description = "Candidates, or why there is none", body = FindTimeAnswer)))]
async fn find_time(
    State(state): State<AppState>,
    QueryBody { principal, body }: QueryBody<FindTimeBody>,
) -> Result<Json<FindTimeAnswer>, ApiError> {
    let question = body.question()?;
    let answer = state.app.find_time(&principal.tenant, &question).await??;
    Ok(Json(match answer {
        Ok(found) => FindTimeAnswer {
            candidates: found
                .into_iter()
                .map(|f| CandidateView {
                    starts_at: f.range.starts_at,
                    ends_at: f.range.ends_at,
                    reservations: f
                        .picks
                        .iter()
                        .enumerate()
                        .flat_map(|(requirement, ids)| {
                            ids.iter().map(move |&resource_id| CandidateReservation {
                                resource_id,
                                requirement,
                            })
                        })
                        .collect(),
                    optional_free: f.optional_free,
                })
                .collect(),
            reasons: Vec::new(),
        },
        Err(reasons) => FindTimeAnswer {
            candidates: Vec::new(),
            reasons: reasons
                .into_iter()
                .map(|r| ReasonView {
                    requirement: r.requirement,
                    reason: r.never.name(),
                    detail: r.detail,
                })
                .collect(),
        },
    }))
}
