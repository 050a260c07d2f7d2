//! Waitlists (SPEC §12): clients join for a range on a resource or a
//! pool, leave, and are offered freed capacity by themselves. An offer is a
//! hold of the entry's range, placed in the transaction that records
//! `waitlist.offered` and admitted by the one rule under the resource's
//! locks, so one freed unit is never offered twice; converting the hold
//! records `waitlist.fulfilled` in the booking's transaction
//! (`crate::bookings`), and an offer whose hold ran out or was given up
//! lapses and lets the next entry have the unit.

use chrono::{DateTime, Utc};
use muster_domain::hold::{Hold, HoldCommand, HoldStatus};
use muster_domain::policy::Claim;
use muster_domain::pool::{Members, Pool};
use muster_domain::waitlist::{
    EntrySpec, EntryStatus, Offer, Target, WaitlistCommand, WaitlistEntry,
};
use muster_store::ledger::Availability;
use muster_store::waitlist::StoredEntry;
use muster_store::{CommandContext, LockRequest};
use uuid::Uuid;

use crate::bookings::{Pick, PickFrom, Picking};
use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

mod offering;

pub use offering::offer_freed;

/// Joins the waitlist; a pool entry's pool must exist (a resource entry's
/// resource is required by the write side).
struct JoinWaitlist {
    entry_id: Uuid,
    spec: EntrySpec,
    now: DateTime<Utc>,
}

impl Decision for JoinWaitlist {
    type On = WaitlistEntry;

    fn name(&self) -> &'static str {
        "waitlist.join"
    }

    fn stream_id(&self) -> Uuid {
        self.entry_id
    }

    fn query(&self, _: &Read) -> Query {
        match self.spec.target {
            Target::Pool { pool_id } => Query::default().stream::<Pool>(pool_id),
            Target::Resource { .. } => Query::default(),
        }
    }

    fn decide(&self, read: &Read) -> Result<Plan<WaitlistEntry>, Refusal> {
        if let Target::Pool { pool_id } = self.spec.target
            && read.state::<Pool>(pool_id).is_none()
        {
            return Err(Refusal::invalid("pool_id", "no such pool"));
        }
        Ok(Plan::new(WaitlistCommand::Join {
            spec: self.spec.clone(),
            now: self.now,
        }))
    }
}

/// Leaves the waitlist, releasing an open offer's hold with it.
struct LeaveWaitlist {
    entry_id: Uuid,
}

impl Decision for LeaveWaitlist {
    type On = WaitlistEntry;

    fn name(&self) -> &'static str {
        "waitlist.leave"
    }

    fn stream_id(&self) -> Uuid {
        self.entry_id
    }

    fn query(&self, read: &Read) -> Query {
        let query = Query::default().stream::<WaitlistEntry>(self.entry_id);
        match open_hold(read, self.entry_id) {
            Some(hold_id) => query.stream::<Hold>(hold_id),
            None => query,
        }
    }

    fn decide(&self, read: &Read) -> Result<Plan<WaitlistEntry>, Refusal> {
        let plan = Plan::new(WaitlistCommand::Leave);
        Ok(match open_hold(read, self.entry_id) {
            Some(hold_id) if read.state::<Hold>(hold_id).is_some_and(|h| h.end.is_none()) => {
                plan.link::<Hold>(hold_id, HoldCommand::Release)
            }
            _ => plan,
        })
    }
}

/// The hold of entry `entry_id`'s open offer, once the entry is read.
fn open_hold(read: &Read, entry_id: Uuid) -> Option<Uuid> {
    read.state::<WaitlistEntry>(entry_id)?
        .open_offer()
        .map(|offer| offer.hold_id)
}

/// Offers a waiting entry its range: a hold on the resource (or on the
/// member its pool's strategy picks), decided under the locks of every
/// candidate on the write side's own verdict, or refused when nothing is
/// free there.
struct OfferSlot<'a> {
    entry: &'a StoredEntry,
    hold_id: Uuid,
    now: DateTime<Utc>,
}

impl OfferSlot<'_> {
    /// A hold's claim on the entry's range (holds carry no headcount).
    fn claim(&self) -> Claim {
        Claim {
            range: self.entry.range,
            headcount: None,
            outside_working_hours: false,
        }
    }

    /// A pool entry's pick of one member of `pool_id`.
    fn pick(&self, pool_id: Uuid) -> Pick {
        Pick {
            from: PickFrom::Pool(pool_id),
            count: 1,
            starts_at: self.entry.range.starts_at,
            ends_at: self.entry.range.ends_at,
        }
    }

    /// The resource to hold, as the locks show it.
    fn chosen(&self, read: &Read) -> Result<Uuid, Refusal> {
        let locked = read.locked().ok_or(Refusal::ConcurrencyConflict)?;
        let resource_id = match self.entry.target {
            Target::Pool { pool_id } => {
                let pick = self.pick(pool_id);
                return picking(&pick)
                    .decide(read, locked)?
                    .into_iter()
                    .flat_map(|(_, members)| members)
                    .next()
                    .ok_or(Refusal::ConcurrencyConflict);
            }
            Target::Resource { resource_id } => resource_id,
        };
        match locked.verdicts.first() {
            Some((id, Availability::Free)) if *id == resource_id => Ok(resource_id),
            Some((_, Availability::Conflicts(conflicts))) => Err(Refusal::ReservationConflict {
                conflicts: conflicts.clone(),
            }),
            Some((_, Availability::Refused(refusal))) => Err(Refusal::Policy {
                resource_id,
                refusal: refusal.clone(),
            }),
            Some((_, Availability::Retired)) => Err(Refusal::ResourceRetired { resource_id }),
            _ => Err(Refusal::invalid(
                "resource_id",
                format!("no resource {resource_id}"),
            )),
        }
    }
}

/// One member of a pool for a hold: a pick with no named resources.
fn picking(pick: &Pick) -> Picking<'_> {
    Picking {
        picks: vec![(0, pick, false, "pool_id".to_owned())],
        named: Vec::new(),
        headcount: 1,
    }
}

impl Decision for OfferSlot<'_> {
    type On = WaitlistEntry;

    fn name(&self) -> &'static str {
        "waitlist.offer"
    }

    fn stream_id(&self) -> Uuid {
        self.entry.entry_id
    }

    fn query(&self, read: &Read) -> Query {
        let query = Query::default().stream::<WaitlistEntry>(self.entry.entry_id);
        match self.entry.target {
            Target::Pool { pool_id } => {
                let mut query = query.stream::<Pool>(pool_id);
                if let Some(Members::Selector(selector)) = read
                    .state::<Pool>(pool_id)
                    .and_then(|p| p.spec.as_ref())
                    .map(|spec| &spec.members)
                {
                    query = query.matching(pool_id, selector.clone());
                }
                let pick = self.pick(pool_id);
                query.lock(picking(&pick).lock_request(read))
            }
            Target::Resource { resource_id } => query.lock(LockRequest {
                claims: vec![(resource_id, self.claim())],
                pools: Vec::new(),
                leaving: Vec::new(),
                with_held: false,
            }),
        }
    }

    fn decide(&self, read: &Read) -> Result<Plan<WaitlistEntry>, Refusal> {
        let status = read
            .state::<WaitlistEntry>(self.entry.entry_id)
            .and_then(|e| e.status);
        if status != Some(EntryStatus::Waiting) {
            return Err(Refusal::InvalidTransition {
                detail: "the entry no longer waits".into(),
            });
        }
        let resource_id = self.chosen(read)?;
        let ttl = self.entry.offer_ttl.to_duration();
        let offer = Offer {
            hold_id: self.hold_id,
            resource_id,
            expires_at: self.now + ttl,
        };
        Ok(Plan::new(WaitlistCommand::Offer(offer)).link::<Hold>(
            self.hold_id,
            HoldCommand::Place {
                resource_id,
                range: self.entry.range,
                ttl,
                now: self.now,
                offer_for: Some(self.entry.entry_id),
                pool_id: match self.entry.target {
                    Target::Pool { pool_id } => Some(pool_id),
                    Target::Resource { .. } => None,
                },
            },
        ))
    }
}

/// Ends an offer whose hold ran out or was given up (`waitlist.lapsed`),
/// recording the hold's expiry with it when no sweeper has yet; refused
/// while the hold still counts or after it became a booking.
struct LapseOffer {
    entry_id: Uuid,
    hold_id: Uuid,
    now: DateTime<Utc>,
}

impl Decision for LapseOffer {
    type On = WaitlistEntry;

    fn name(&self) -> &'static str {
        "waitlist.lapse"
    }

    fn stream_id(&self) -> Uuid {
        self.entry_id
    }

    fn query(&self, _: &Read) -> Query {
        Query::default()
            .stream::<WaitlistEntry>(self.entry_id)
            .stream::<Hold>(self.hold_id)
    }

    fn decide(&self, read: &Read) -> Result<Plan<WaitlistEntry>, Refusal> {
        let plan = Plan::new(WaitlistCommand::Lapse {
            hold_id: self.hold_id,
        });
        let Some(hold) = read.state::<Hold>(self.hold_id) else {
            return Ok(plan);
        };
        match hold.status(self.now) {
            Some(HoldStatus::Active) => Err(Refusal::InvalidTransition {
                detail: "the offer's hold still counts".into(),
            }),
            Some(HoldStatus::Converted) => Err(Refusal::InvalidTransition {
                detail: "the offer's hold became a booking".into(),
            }),
            Some(HoldStatus::Expired) if hold.end.is_none() => {
                Ok(plan.link::<Hold>(self.hold_id, HoldCommand::Expire { now: self.now }))
            }
            _ => Ok(plan),
        }
    }
}

/// What an offer attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// The entry holds an offer now.
    Yes,
    /// Nothing fits it now (or it no longer waits).
    DoesNotFit,
    /// Concurrent writers kept the decision from settling: whether it
    /// fits is unknown, so the entries after it must wait their turn.
    Contended,
}

/// Counts an entry's step for the metrics.
fn counted(outcome: &'static str) {
    metrics::counter!("muster_waitlist_total", "outcome" => outcome).increment(1);
}

impl App {
    /// Puts a client on the waitlist of a resource or a pool for a range.
    pub async fn join_waitlist(
        &self,
        ctx: &CommandContext,
        spec: EntrySpec,
    ) -> Answer<WaitlistEntry> {
        let decision = JoinWaitlist {
            entry_id: Uuid::now_v7(),
            spec,
            now: Utc::now(),
        };
        let answer = self.run(ctx, decision).await?;
        if let crate::Outcome::Executed(_) = answer {
            counted("joined");
        }
        Ok(answer)
    }

    /// Takes entry `id` off the waitlist, releasing its open offer's hold.
    pub async fn leave_waitlist(&self, ctx: &CommandContext, id: Uuid) -> Answer<WaitlistEntry> {
        let answer = self.run(ctx, LeaveWaitlist { entry_id: id }).await?;
        if let crate::Outcome::Executed(executed) = &answer
            && executed.outcome.appended > 0
        {
            counted("left");
        }
        Ok(answer)
    }

    /// Offers `entry` its range if it fits now.
    pub(crate) async fn offer_slot(
        &self,
        ctx: &CommandContext,
        entry: &StoredEntry,
    ) -> Result<Offered, crate::AppError> {
        let decision = OfferSlot {
            entry,
            hold_id: Uuid::now_v7(),
            now: Utc::now(),
        };
        Ok(match self.run(ctx, decision).await? {
            crate::Outcome::Executed(_) => {
                counted("offered");
                Offered::Yes
            }
            crate::Outcome::Refused(Refusal::ConcurrencyConflict) => Offered::Contended,
            _ => Offered::DoesNotFit,
        })
    }

    /// Lapses entry `entry_id`'s offer of hold `hold_id` if the hold
    /// ended unconverted; `Ok(false)` when there was nothing to lapse.
    pub(crate) async fn lapse_offer(
        &self,
        ctx: &CommandContext,
        entry_id: Uuid,
        hold_id: Uuid,
    ) -> Result<bool, crate::AppError> {
        let decision = LapseOffer {
            entry_id,
            hold_id,
            now: Utc::now(),
        };
        Ok(match self.run(ctx, decision).await? {
            crate::Outcome::Executed(executed) if executed.outcome.appended > 0 => {
                counted("lapsed");
                true
            }
            _ => false,
        })
    }
}
