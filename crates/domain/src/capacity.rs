//! The capacity rule shared by the write side and the conflict check: a
//! resource of capacity `c` may hold at most `c` reservations at any instant.

use crate::time::TimeRange;

/// Which existing reservations stand in the way of `candidate`, or an empty
/// list when it fits. `existing` holds the resource's current reservations
/// (any of them; those not overlapping the candidate are ignored).
///
/// The answer lists every existing reservation that overlaps an instant of
/// the candidate's range at which the resource is already full, so a client
/// sees exactly what to move. With capacity 1 that is every overlap.
pub fn blocking_reservations(
    existing: &[TimeRange],
    candidate: &TimeRange,
    capacity: u32,
) -> Vec<usize> {
    let overlapping: Vec<usize> = (0..existing.len())
        .filter(|&i| existing[i].overlaps(candidate))
        .collect();
    if overlapping.len() < capacity as usize {
        return Vec::new();
    }
    let active: Vec<TimeRange> = overlapping.iter().map(|&i| existing[i]).collect();
    let full = full_periods(&active, candidate, capacity);
    overlapping
        .into_iter()
        .filter(|&i| full.iter().any(|f| existing[i].overlaps(f)))
        .collect()
}

/// The maximal sub-ranges of `window` in which at least `capacity` of
/// `ranges` are active at once (a sweep over their boundaries): the times a
/// resource of that capacity is full.
pub fn full_periods(ranges: &[TimeRange], window: &TimeRange, capacity: u32) -> Vec<TimeRange> {
    // +1 at a start, -1 at an end; ends sort before starts at the same
    // instant because the ranges are half-open.
    let mut boundaries: Vec<(chrono::DateTime<chrono::Utc>, i32)> = ranges
        .iter()
        .filter(|r| r.overlaps(window))
        .flat_map(|r| {
            [
                (r.starts_at.max(window.starts_at), 1),
                (r.ends_at.min(window.ends_at), -1),
            ]
        })
        .collect();
    boundaries.sort_by_key(|&(at, delta)| (at, delta));

    let mut active = 0i64;
    let mut full = Vec::new();
    let mut full_since = None;
    for (at, delta) in boundaries {
        active += i64::from(delta);
        match (active >= i64::from(capacity), full_since) {
            (true, None) => full_since = Some(at),
            (false, Some(since)) => {
                if since < at {
                    full.push(TimeRange {
                        starts_at: since,
                        ends_at: at,
                    });
                }
                full_since = None;
            }
            _ => {}
        }
    }
    full
}

/// The largest number of `ranges` active at any one instant.
pub fn peak_concurrency(ranges: &[TimeRange]) -> usize {
    let mut boundaries: Vec<(chrono::DateTime<chrono::Utc>, i32)> = ranges
        .iter()
        .flat_map(|r| [(r.starts_at, 1), (r.ends_at, -1)])
        .collect();
    boundaries.sort_by_key(|&(at, delta)| (at, delta));
    let mut active = 0i64;
    let mut peak = 0i64;
    for (_, delta) in boundaries {
        active += i64::from(delta);
        peak = peak.max(active);
    }
    usize::try_from(peak).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn r(from: u32, to: u32) -> TimeRange {
        TimeRange {
            starts_at: Utc.with_ymd_and_hms(2027, 1, 1, from, 0, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2027, 1, 1, to, 0, 0).unwrap(),
        }
    }

    #[test]
    fn capacity_one_blocks_every_overlap_and_nothing_back_to_back() {
        let existing = [r(8, 10), r(10, 12), r(13, 14)];
        assert_eq!(blocking_reservations(&existing, &r(9, 11), 1), vec![0, 1]);
        assert!(blocking_reservations(&existing, &r(12, 13), 1).is_empty());
    }

    #[test]
    fn capacity_two_allows_two_at_once_but_not_three() {
        // 8-12 and 10-14 overlap in 10-12; a third in 11-13 makes three at 11-12.
        let existing = [r(8, 12), r(10, 14), r(15, 16)];
        assert!(blocking_reservations(&existing, &r(6, 9), 2).is_empty());
        assert!(blocking_reservations(&existing, &r(12, 16), 2).is_empty());
        assert_eq!(blocking_reservations(&existing, &r(11, 13), 2), vec![0, 1]);
    }

    #[test]
    fn non_simultaneous_overlaps_do_not_fill_capacity_two() {
        // Both overlap the candidate, but never at the same instant.
        let existing = [r(8, 10), r(10, 12)];
        assert!(blocking_reservations(&existing, &r(9, 11), 2).is_empty());
    }

    #[test]
    fn only_reservations_in_full_instants_are_reported() {
        let existing = [r(8, 10), r(8, 10), r(11, 12)];
        assert_eq!(blocking_reservations(&existing, &r(9, 12), 2), vec![0, 1]);
    }

    #[test]
    fn peak_concurrency_counts_half_open_ranges() {
        assert_eq!(peak_concurrency(&[r(8, 10), r(10, 12)]), 1);
        assert_eq!(peak_concurrency(&[r(8, 10), r(9, 12), r(9, 10)]), 3);
        assert_eq!(peak_concurrency(&[]), 0);
    }
}
