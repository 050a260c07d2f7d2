//! Picking a pool's members for a reservation (SPEC §12): decided under
//! the locks of every candidate, on the write side's own verdict for each,
//! so two concurrent requests never take the same member beyond its
//! capacity and a request fails only when too few members are free. A
//! pool reservation that moves keeps its member when the member is free
//! at the new time, and otherwise takes another the same way.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use muster_domain::booking::{Booking, Repicked, Reservation};
use muster_domain::policy::{Claim, Refusal as PolicyRefusal};
use muster_domain::pool::{MemberLoad, Members, Pool, Strategy};
use muster_domain::time::TimeRange;
use muster_store::ledger::Availability;
use muster_store::{LockRequest, Locked};
use uuid::Uuid;

use crate::decision::{Query, Read};
use crate::outcome::{Exhausted, MemberRefusal, Refusal};

/// Where a pick takes its members from.
#[derive(Debug, Clone)]
pub enum PickFrom {
    /// A pool: its members (explicit, or what its selector takes now) by
    /// its strategy.
    Pool(Uuid),
    /// These resources, least booked first (ties in this order).
    AnyOf(Vec<Uuid>),
}

/// `count` distinct members of a pool, or of an ad hoc set, for a range.
#[derive(Debug, Clone)]
pub struct Pick {
    /// Where from.
    pub from: PickFrom,
    /// How many distinct members.
    pub count: u32,
    /// Inclusive start.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end.
    pub ends_at: DateTime<Utc>,
}

impl Pick {
    /// The pool it names, if any.
    pub(crate) fn pool_id(&self) -> Option<Uuid> {
        match self.from {
            PickFrom::Pool(id) => Some(id),
            PickFrom::AnyOf(_) => None,
        }
    }

    /// Its candidates in member order, once what they depend on is read
    /// (`None` while the pool's stream or its selector's match is not).
    pub(crate) fn candidates<'r>(&'r self, read: &'r Read) -> Option<&'r [Uuid]> {
        match &self.from {
            PickFrom::AnyOf(ids) => Some(ids),
            PickFrom::Pool(id) => match &read.state::<Pool>(*id)?.spec.as_ref()?.members {
                Members::Explicit(ids) => Some(ids),
                Members::Selector(_) => read.is_matched(*id).then(|| read.matching(*id)),
            },
        }
    }

    pub(crate) fn strategy(&self, read: &Read) -> Strategy {
        match self.from {
            PickFrom::Pool(id) => read
                .state::<Pool>(id)
                .and_then(|p| p.spec.as_ref())
                .map(|spec| spec.strategy)
                .unwrap_or_default(),
            PickFrom::AnyOf(_) => Strategy::LeastBooked,
        }
    }

    /// The claim on each candidate.
    pub(crate) fn claim(&self, headcount: u32, outside_working_hours: bool) -> Claim {
        Claim {
            range: TimeRange {
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            },
            headcount: Some(headcount),
            outside_working_hours,
        }
    }
}

/// The picks of a request, by their place in it, and what each needs.
pub(crate) struct Picking<'a> {
    /// (place in the request, pick, outside working hours, field).
    pub picks: Vec<(usize, &'a Pick, bool, String)>,
    /// The resources the request names itself (never picked for it).
    pub named: Vec<(Uuid, Claim)>,
    /// The booking's headcount.
    pub headcount: u32,
}

impl Picking<'_> {
    /// What to lock: every candidate of every pick (in order), then the
    /// resources the request names, so that all are locked in one ordered
    /// pass.
    pub fn lock_request(&self, read: &Read) -> LockRequest {
        let mut claims = Vec::new();
        let mut pools = Vec::new();
        for (_, pick, outside, _) in &self.picks {
            let claim = pick.claim(self.headcount, *outside);
            claims.extend(
                pick.candidates(read)
                    .unwrap_or_default()
                    .iter()
                    .map(|&id| (id, claim)),
            );
            pools.extend(pick.pool_id());
        }
        claims.extend(self.named.iter().copied());
        LockRequest {
            claims,
            pools,
            leaving: Vec::new(),
            with_held: false,
        }
    }

    /// The members each pick takes (by its place in the request), decided
    /// on what the locks show; the first pick that cannot be filled
    /// refuses the request.
    pub fn decide(&self, read: &Read, locked: &Locked) -> Result<Vec<(usize, Vec<Uuid>)>, Refusal> {
        let mut taken: HashSet<Uuid> = self.named.iter().map(|(id, _)| *id).collect();
        let mut at = 0;
        let mut chosen = Vec::with_capacity(self.picks.len());
        for (place, pick, _, field) in &self.picks {
            let Some(candidates) = pick.candidates(read) else {
                return Err(Refusal::invalid(field.clone(), "no such pool"));
            };
            let verdicts = locked.verdicts.get(at..at + candidates.len());
            let minutes = locked.booked_minutes.get(at..at + candidates.len());
            let (Some(verdicts), Some(minutes)) = (verdicts, minutes) else {
                // The locks were taken for another read: retried as a
                // lost race.
                return Err(Refusal::ConcurrencyConflict);
            };
            at += candidates.len();
            let pool_id = pick.pool_id();
            let (free, refused) =
                weigh(pool_id, verdicts, minutes, &taken, locked).map_err(|i| {
                    let resource_id = verdicts[i].0;
                    Refusal::invalid(
                        match pick.from {
                            PickFrom::AnyOf(_) => format!("{field}[{i}]"),
                            PickFrom::Pool(_) => field.clone(),
                        },
                        format!("no resource {resource_id}"),
                    )
                })?;
            let count = pick.count as usize;
            if free.len() < count {
                return Err(Refusal::PoolExhausted(Exhausted {
                    field: field.clone(),
                    pool_id: pick.pool_id(),
                    count: pick.count,
                    free: free.len() as u32,
                    members: refused,
                }));
            }
            let members: Vec<Uuid> = pick
                .strategy(read)
                .order(&free)
                .into_iter()
                .take(count)
                .collect();
            taken.extend(members.iter().copied());
            chosen.push((*place, members));
        }
        Ok(chosen)
    }
}

/// Pool reservations that move (a reschedule, a move without a resource):
/// each keeps its member when the member is free at its new range, and
/// otherwise takes another free member of its pool, decided under the
/// locks of the member and the pool's other members (SPEC §12).
pub(crate) struct Repicking {
    /// Each moving pool reservation at its new range, on its member now.
    pub moving: Vec<Reservation>,
    /// The resources the booking holds (never picked for it again).
    pub held: HashSet<Uuid>,
    /// The booking's headcount.
    pub headcount: u32,
}

impl Repicking {
    /// The moves of `moved` (reservations at their new ranges) that a
    /// pool may re-pick; `None` when there is none.
    pub fn of(booking: &Booking, moved: Vec<Reservation>) -> Option<Self> {
        let moving: Vec<Reservation> = moved.into_iter().filter(|r| r.pool_id.is_some()).collect();
        let headcount = booking.details.as_ref().map_or(0, |d| d.headcount);
        (!moving.is_empty()).then(|| Repicking {
            moving,
            held: booking.reservations.iter().map(|r| r.resource_id).collect(),
            headcount,
        })
    }

    fn pick_of(r: &Reservation) -> Pick {
        Pick {
            from: PickFrom::Pool(r.pool_id.unwrap_or_default()),
            count: 1,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
        }
    }

    /// The member first, then the pool's other members (only the member
    /// while the pool is not read, or gone).
    fn candidates(r: &Reservation, read: &Read) -> Vec<Uuid> {
        let pick = Self::pick_of(r);
        let others = pick.candidates(read).unwrap_or_default();
        std::iter::once(r.resource_id)
            .chain(others.iter().copied().filter(|&id| id != r.resource_id))
            .collect()
    }

    /// `query` with the pools read and the members locked.
    pub fn query(&self, query: Query, read: &Read) -> Query {
        let pools: Vec<Uuid> = self.moving.iter().filter_map(|r| r.pool_id).collect();
        let mut query = query.streams::<Pool>(pools.iter().copied());
        for &pool_id in &pools {
            if let Some(Members::Selector(selector)) = read
                .state::<Pool>(pool_id)
                .and_then(|p| p.spec.as_ref())
                .map(|spec| &spec.members)
            {
                query = query.matching(pool_id, selector.clone());
            }
        }
        let mut claims = Vec::new();
        for r in &self.moving {
            let claim = Self::pick_of(r).claim(self.headcount, r.outside_working_hours);
            claims.extend(Self::candidates(r, read).into_iter().map(|id| (id, claim)));
        }
        query.lock(LockRequest {
            claims,
            pools,
            leaving: self.moving.iter().map(|r| r.reservation_id).collect(),
            with_held: false,
        })
    }

    /// The reservations that change member, and to which; refused when a
    /// member is busy and its pool has no other free.
    pub fn decide(
        &self,
        read: &Read,
        locked: &Locked,
        field: &str,
    ) -> Result<Vec<Repicked>, Refusal> {
        let mut taken = self.held.clone();
        let mut at = 0;
        let mut repicked = Vec::new();
        for r in &self.moving {
            let n = Self::candidates(r, read).len();
            let (Some(verdicts), Some(minutes)) = (
                locked.verdicts.get(at..at + n),
                locked.booked_minutes.get(at..at + n),
            ) else {
                return Err(Refusal::ConcurrencyConflict);
            };
            at += n;
            if verdicts[0].1 == Availability::Free {
                continue;
            }
            let pool_id = r.pool_id;
            let weighed = weigh(pool_id, verdicts, minutes, &taken, locked);
            let (free, members) = weighed.map_err(|_| Refusal::ConcurrencyConflict)?;
            let strategy = Self::pick_of(r).strategy(read);
            let Some(&member) = strategy.order(&free).first() else {
                return Err(Refusal::PoolExhausted(Exhausted {
                    field: field.to_owned(),
                    pool_id,
                    count: 1,
                    free: 0,
                    members,
                }));
            };
            taken.insert(member);
            repicked.push(Repicked {
                reservation_id: r.reservation_id,
                resource_id: member,
            });
        }
        Ok(repicked)
    }
}

/// The free members among `verdicts` (with what a strategy weighs) and
/// why each other one is not free; `Err(i)` names the first that does not
/// exist.
fn weigh(
    pool_id: Option<Uuid>,
    verdicts: &[(Uuid, Availability)],
    minutes: &[i64],
    taken: &HashSet<Uuid>,
    locked: &Locked,
) -> Result<(Vec<MemberLoad>, Vec<MemberRefusal>), usize> {
    let mut free = Vec::new();
    let mut refused = Vec::new();
    for (i, ((resource_id, verdict), minutes)) in verdicts.iter().zip(minutes).enumerate() {
        let reason = match verdict {
            Availability::Free if taken.contains(resource_id) => "picked",
            Availability::Free => {
                free.push(MemberLoad {
                    resource_id: *resource_id,
                    booked_minutes: *minutes,
                    last_assigned_at: pool_id
                        .and_then(|pool| locked.last_assigned.get(&(pool, *resource_id)).copied()),
                });
                continue;
            }
            Availability::Conflicts(_) | Availability::Refused(PolicyRefusal::Full(_)) => "busy",
            Availability::Refused(refusal) => refusal.reason(),
            Availability::Retired => "retired",
            Availability::Unknown => return Err(i),
        };
        refused.push(MemberRefusal {
            resource_id: *resource_id,
            reason: reason.to_owned(),
        });
    }
    Ok((free, refused))
}
