//! Finding a time for several resources (SPEC §12): the earliest ranges in
//! a window where every requirement is met at once (a resource; `count`
//! members of a pool; one of `any_of`), each by the write side's own rule
//! ([`ResourceRules::free_slots`], which is [`ResourceRules::admits`]
//! turned around), with distinct resources for distinct requirements;
//! and, when there is none, why each requirement never fits.
//!
//! Pure: the caller reads each candidate's rule and what it holds around
//! the window (the same read the conflict check makes) and hands them in,
//! in the order it prefers them (a pool's strategy).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::policy::ResourceRules;
use crate::time::TimeRange;

/// A resource that may serve a requirement, with what decides whether it
/// can.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The resource.
    pub resource_id: Uuid,
    /// Its booking rule.
    pub rules: ResourceRules,
    /// The ranges it holds around the window (reservations and unexpired
    /// holds, buffers not included).
    pub held: Vec<TimeRange>,
    /// Whether it is retired (it takes nothing).
    pub retired: bool,
}

/// What one requirement asks for: `count` distinct resources among its
/// candidates, preferred in their order.
#[derive(Debug, Clone)]
pub struct Requirement {
    /// The resources that may serve it.
    pub candidates: Vec<Candidate>,
    /// How many of them it needs at once.
    pub count: usize,
}

/// The search itself.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    /// Where the ranges may lie.
    pub window: TimeRange,
    /// How long each is.
    pub duration: Duration,
    /// Starts are `window.starts_at` plus whole multiples of this.
    pub granularity: Duration,
    /// Most candidates answered.
    pub limit: usize,
    /// The booking's headcount, checked against seats.
    pub headcount: Option<u32>,
    /// The clock (notice and horizon).
    pub now: DateTime<Utc>,
}

/// A range where every requirement is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The range.
    pub range: TimeRange,
    /// For each requirement, in order, the resources that would serve it.
    pub picks: Vec<Vec<Uuid>>,
    /// The optional resources free then (besides the picks).
    pub optional_free: Vec<Uuid>,
}

/// Why a requirement never fits in the window, as the write side would
/// refuse its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Never {
    /// Every candidate is retired.
    Retired,
    /// The headcount exceeds the candidates' seats.
    SeatsExceeded,
    /// The window ends before the minimum notice allows a start.
    TooSoon,
    /// The window starts after the booking horizon.
    TooFarAhead,
    /// No working period in the window is long enough.
    OutsideWorkingHours,
    /// Free times exist, but the bookings held leave none long enough.
    Booked,
    /// Each requirement fits at some time, but never all at once.
    NotTogether,
}

impl Never {
    /// Its stable name, as answers give it.
    pub fn name(self) -> &'static str {
        match self {
            Never::Retired => "resource-retired",
            Never::SeatsExceeded => "seats-exceeded",
            Never::TooSoon => "too-soon",
            Never::TooFarAhead => "too-far-ahead",
            Never::OutsideWorkingHours => "outside-working-hours",
            Never::Booked => "reservation-conflict",
            Never::NotTogether => "not-together",
        }
    }
}

/// Why nothing fits, for one requirement (`None`: the optional resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The requirement's index, or `None` for the optional ones.
    pub requirement: Option<usize>,
    /// Why.
    pub never: Never,
    /// In words, with how many candidates each reason held back.
    pub detail: String,
}

/// The earliest ranges (at most `search.limit`) where every requirement
/// is met and at least `min_optional` of `optional` are free; or, when
/// there is none in the window, why.
pub fn find_time(
    search: &Search,
    requirements: &[Requirement],
    optional: &[Candidate],
    min_optional: usize,
) -> Result<Vec<Found>, Vec<Reason>> {
    let slots = |c: &Candidate| free_slots(search, c);
    let free: Vec<Vec<Vec<TimeRange>>> = requirements
        .iter()
        .map(|r| r.candidates.iter().map(slots).collect())
        .collect();
    let optional_free: Vec<Vec<TimeRange>> = optional.iter().map(slots).collect();
    let mut found = Vec::new();
    let mut fits_alone = vec![false; requirements.len()];
    let mut together = false;
    for start in starts(search) {
        let range = TimeRange {
            starts_at: start,
            ends_at: start + search.duration,
        };
        // Which candidates of each requirement are free then.
        let open: Vec<Vec<usize>> = free
            .iter()
            .map(|candidates| {
                (0..candidates.len())
                    .filter(|&i| fits(&candidates[i], &range))
                    .collect()
            })
            .collect();
        let mut all_enough = true;
        for (r, requirement) in requirements.iter().enumerate() {
            if open[r].len() >= requirement.count {
                fits_alone[r] = true;
            } else {
                all_enough = false;
            }
        }
        if !all_enough {
            continue;
        }
        let Some(picks) = assign(requirements, &open) else {
            continue;
        };
        together = true;
        let picked: Vec<Uuid> = picks.iter().flatten().copied().collect();
        let free_optional: Vec<Uuid> = optional
            .iter()
            .zip(&optional_free)
            .filter(|(c, slots)| !picked.contains(&c.resource_id) && fits(slots, &range))
            .map(|(c, _)| c.resource_id)
            .collect();
        if free_optional.len() < min_optional {
            continue;
        }
        found.push(Found {
            range,
            picks,
            optional_free: free_optional,
        });
        if found.len() >= search.limit {
            break;
        }
    }
    if !found.is_empty() {
        return Ok(found);
    }
    let mut reasons: Vec<Reason> = requirements
        .iter()
        .enumerate()
        .filter(|(r, _)| !fits_alone[*r])
        .map(|(r, requirement)| reason(search, Some(r), &requirement.candidates))
        .collect();
    if reasons.is_empty() && !together {
        reasons.push(Reason {
            requirement: None,
            never: Never::NotTogether,
            detail: "each requirement fits at some time in the window, never all at once".into(),
        });
    }
    if reasons.is_empty() {
        // Together they fit; too few optional resources are free then.
        let mut why = reason(search, None, optional);
        why.detail = format!(
            "fewer than {min_optional} optional resources are free whenever the requirements are met; {}",
            why.detail
        );
        reasons.push(why);
    }
    Err(reasons)
}

/// Every start on the grid whose range lies in the window.
fn starts(search: &Search) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    let step = search.granularity.max(Duration::minutes(1));
    let last = search.window.ends_at - search.duration;
    std::iter::successors(Some(search.window.starts_at), move |t| Some(*t + step))
        .take_while(move |t| *t <= last)
}

/// Where a claim of the search's duration may start on `candidate`, by the
/// write side's rule: seats, notice, horizon, working hours, capacity with
/// buffers.
fn free_slots(search: &Search, candidate: &Candidate) -> Vec<TimeRange> {
    if candidate.retired || seats_refuse(search, candidate) {
        return Vec::new();
    }
    candidate
        .rules
        .free_slots(&candidate.held, &search.window, search.duration, search.now)
}

fn seats_refuse(search: &Search, candidate: &Candidate) -> bool {
    matches!((candidate.rules.seats, search.headcount), (Some(seats), Some(h)) if h > seats)
}

/// Whether `range` fits wholly in one of `slots` (sorted, disjoint).
fn fits(slots: &[TimeRange], range: &TimeRange) -> bool {
    let at = slots.partition_point(|s| s.starts_at <= range.starts_at);
    at > 0 && slots[at - 1].ends_at >= range.ends_at
}

/// Distinct resources for every requirement (each `count` of its open
/// candidates), preferring each requirement's order; `None` when no
/// assignment exists. A matching by augmenting paths: a resource wanted by
/// two requirements goes where it is needed.
fn assign(requirements: &[Requirement], open: &[Vec<usize>]) -> Option<Vec<Vec<Uuid>>> {
    // Each requirement's places, and who holds which resource.
    let places: Vec<usize> = requirements
        .iter()
        .enumerate()
        .flat_map(|(r, req)| std::iter::repeat_n(r, req.count))
        .collect();
    let mut holder: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for place in 0..places.len() {
        let mut seen = std::collections::HashSet::new();
        if !augment(place, &places, requirements, open, &mut holder, &mut seen) {
            return None;
        }
    }
    let mut picks = vec![Vec::new(); requirements.len()];
    for (r, requirement) in requirements.iter().enumerate() {
        // In the requirement's order of preference.
        for &i in &open[r] {
            let id = requirement.candidates[i].resource_id;
            if holder.get(&id).is_some_and(|&place| places[place] == r) {
                picks[r].push(id);
            }
        }
    }
    Some(picks)
}

fn augment(
    place: usize,
    places: &[usize],
    requirements: &[Requirement],
    open: &[Vec<usize>],
    holder: &mut std::collections::HashMap<Uuid, usize>,
    seen: &mut std::collections::HashSet<Uuid>,
) -> bool {
    let r = places[place];
    for &i in &open[r] {
        let id = requirements[r].candidates[i].resource_id;
        if !seen.insert(id) {
            continue;
        }
        let free = match holder.get(&id) {
            None => true,
            Some(&other) => augment(other, places, requirements, open, holder, seen),
        };
        if free {
            holder.insert(id, place);
            return true;
        }
    }
    false
}

/// Why none of `candidates` ever fits in the window: the most hopeful
/// reason any of them has (booked before working hours before notice …),
/// with how many each reason held back.
fn reason(search: &Search, requirement: Option<usize>, candidates: &[Candidate]) -> Reason {
    let mut counts: Vec<(Never, usize)> = Vec::new();
    for candidate in candidates {
        let never = why_never(search, candidate);
        match counts.iter_mut().find(|(n, _)| *n == never) {
            Some((_, count)) => *count += 1,
            None => counts.push((never, 1)),
        }
    }
    let hope = |n: Never| match n {
        Never::Booked => 0,
        Never::OutsideWorkingHours => 1,
        Never::TooFarAhead => 2,
        Never::TooSoon => 3,
        Never::SeatsExceeded => 4,
        Never::Retired => 5,
        Never::NotTogether => 6,
    };
    counts.sort_by_key(|(n, _)| hope(*n));
    let never = counts.first().map_or(Never::Booked, |(n, _)| *n);
    let detail = if candidates.is_empty() {
        "no resource can serve it".to_owned()
    } else {
        counts
            .iter()
            .map(|(n, count)| format!("{count} of {}: {}", candidates.len(), n.name()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Reason {
        requirement,
        never,
        detail,
    }
}

/// The ranges of the window in which at least `count` of `candidates` are
/// free at once for `search.duration` (a pool's availability): maximal
/// ranges, any start in `[starts_at, ends_at - duration]` of which at
/// least `count` of them admit, each by the write side's rule. Counted
/// over starts, not instants: two members free over overlapping ranges
/// are not both free for every claim inside their union (so two answered
/// ranges may overlap, their starts never do).
pub fn free_together(search: &Search, candidates: &[Candidate], count: usize) -> Vec<TimeRange> {
    if count == 0 {
        return vec![search.window];
    }
    // Each member's admitted starts are [slot start, slot end - duration];
    // sweep their bounds, opening before closing at the same instant.
    let mut bounds: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for candidate in candidates {
        for slot in free_slots(search, candidate) {
            bounds.push((slot.starts_at, 1));
            bounds.push((slot.ends_at - search.duration, -1));
        }
    }
    bounds.sort_by_key(|&(at, delta)| (at, -delta));
    let mut free = Vec::new();
    let mut open = 0usize;
    let mut since = None;
    for (at, delta) in bounds {
        if delta > 0 {
            open += 1;
            if open == count {
                since = Some(at);
            }
        } else {
            if open == count
                && let Some(first) = since.take()
            {
                free.push(TimeRange {
                    starts_at: first,
                    ends_at: at + search.duration,
                });
            }
            open -= 1;
        }
    }
    free
}

/// Why one candidate never takes a claim of the search's duration in the
/// window: the first part of its rule that leaves no start.
fn why_never(search: &Search, candidate: &Candidate) -> Never {
    if candidate.retired {
        return Never::Retired;
    }
    if seats_refuse(search, candidate) {
        return Never::SeatsExceeded;
    }
    let rules = &candidate.rules;
    if let Some(notice) = rules.policy.min_notice
        && search.now + notice.to_duration() + search.duration > search.window.ends_at
    {
        return Never::TooSoon;
    }
    if let Some(advance) = rules.policy.max_advance
        && search.now + advance.to_duration() < search.window.starts_at
    {
        return Never::TooFarAhead;
    }
    let unbooked = rules.free_slots(&[], &search.window, search.duration, search.now);
    if unbooked.is_empty() {
        return Never::OutsideWorkingHours;
    }
    Never::Booked
}

#[cfg(test)]
mod tests;
