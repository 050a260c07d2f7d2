//! The working-hours rule against the cases in `time_cases.json`, which the
//! dashboard's `time.js` answers too (`tests/browser/time.test.mjs`): the
//! timeline shades the hours that the write side enforces.

use chrono_tz::Tz;
use muster_domain::availability::working_periods;
use muster_domain::policy::ResourceRules;
use muster_domain::time::TimeRange;
use muster_domain::working_hours::{WorkingWindow, validate_working_hours};
use serde::Deserialize;

/// The cases, shared with the dashboard's test; `about` in the file says
/// what each field means.
const CASES: &str = include_str!("time_cases.json");

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

/// One question about a resource's working hours over a UTC range.
#[derive(Deserialize)]
struct Case {
    name: String,
    timezone: String,
    working_hours: Vec<WorkingWindow>,
    range: TimeRange,
    /// The working periods within `range`, clipped to it and joined.
    periods: Option<Vec<TimeRange>>,
    /// Whether `range` lies within the working hours.
    within: Option<bool>,
}

#[test]
fn the_working_hours_rule_answers_every_shared_case() {
    let Cases { cases } = serde_json::from_str::<Cases>(CASES).expect("time_cases.json parses");
    assert!(!cases.is_empty(), "time_cases.json has no cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = &case.name;
        let Ok(tz) = case.timezone.parse::<Tz>() else {
            panic!("{name}: unknown time zone");
        };
        assert!(
            validate_working_hours(&case.working_hours).is_empty(),
            "{name}: the working hours are not valid"
        );
        match (&case.periods, case.within) {
            (Some(expected), None) => {
                // No working hours means "always", which only `within` asks.
                assert!(
                    !case.working_hours.is_empty(),
                    "{name}: a periods case needs working hours"
                );
                let got = working_periods(tz, &case.working_hours, &case.range);
                if got != *expected {
                    failures.push(format!("{name}: periods {got:?}, expected {expected:?}"));
                }
            }
            (None, Some(expected)) => {
                let rules = ResourceRules {
                    timezone: tz,
                    working_hours: case.working_hours.clone(),
                    ..ResourceRules::capacity_only(1)
                };
                let got = rules.within_working_hours(&case.range);
                if got != expected {
                    failures.push(format!("{name}: within {got}, expected {expected}"));
                }
            }
            _ => panic!("{name}: a case asks exactly one of `periods` and `within`"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
