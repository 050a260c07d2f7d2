//! Personal data in events (SPEC §12): which fields of which events hold a
//! client's personal data, and how they read once the client is erased.
//!
//! The store seals exactly these fields with a key of the client's own and
//! opens them on every read; erasing the client deletes the key, and the
//! fields then read as [`erased_value`] says. Everything else in an event
//! (its type, its stream, its times, the resources it holds) is the
//! schedule's own record and is kept.

use serde_json::{Value, json};

/// The fields of a payload of `event_type` (at its current schema version)
/// that hold a client's personal data; empty for events without any.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "booking.requested" | "booking.updated" => &["client", "notes"],
        "waitlist.joined" => &["client"],
        _ => &[],
    }
}

/// Whether payloads of `event_type` may hold personal data.
pub fn has_personal_fields(event_type: &str) -> bool {
    !personal_fields(event_type).is_empty()
}

/// What personal field `field` reads as once its client is erased: a
/// client is `{"erased":true}`; free text is gone (`None`).
pub fn erased_value(field: &str) -> Option<Value> {
    (field == "client").then(|| json!({"erased": true}))
}

/// Replaces the personal fields of `payload` (of `event_type`, at its
/// current schema version) by what they read as once erased; whether
/// there was any to replace.
pub fn redact(event_type: &str, payload: &mut Value) -> bool {
    let Value::Object(fields) = payload else {
        return false;
    };
    let mut redacted = false;
    for &field in personal_fields(event_type) {
        let Some(value) = fields.remove(field) else {
            continue;
        };
        let erased = erased_value(field);
        redacted |= erased.as_ref() != Some(&value);
        if let Some(erased) = erased {
            fields.insert(field.to_owned(), erased);
        }
    }
    redacted
}

/// The lower-case email of the client named in `payload` (of
/// `event_type`), if it names one: whom the event's personal data is about.
pub fn client_email(event_type: &str, payload: &Value) -> Option<String> {
    if !has_personal_fields(event_type) {
        return None;
    }
    payload["client"]["email"]
        .as_str()
        .map(|e| e.trim().to_lowercase())
}

/// How long a client's personal data is kept after their last booking
/// ended (`MUSTER_CLIENT_RETENTION`): ISO 8601 years, months and days
/// (`P3Y`, `P18M`, `P90D`, `P1Y6M`), counted in the calendar, so that
/// "three years" is three years whatever the leap days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    months: u32,
    days: u32,
}

impl Retention {
    /// The instant before which a client's last booking must have ended
    /// for them to be erased, `now` being now.
    pub fn cutoff(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        now.checked_sub_months(chrono::Months::new(self.months))
            .and_then(|t| t.checked_sub_days(chrono::Days::new(u64::from(self.days))))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    }
}

impl std::str::FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a retention like P3Y, P18M or P90D");
        let rest = text.strip_prefix('P').ok_or_else(bad)?;
        let (mut months, mut days, mut seen) = (0u32, 0u32, 0);
        let mut number = String::new();
        for c in rest.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().map_err(|_| bad())?;
            number.clear();
            let (order, add) = match c {
                'Y' => (1, n.checked_mul(12)),
                'M' => (2, Some(n)),
                'D' => (3, Some(n)),
                _ => return Err(bad()),
            };
            if order <= seen {
                return Err(bad());
            }
            seen = order;
            let add = add.ok_or_else(bad)?;
            if c == 'D' {
                days = add;
            } else {
                months = months.checked_add(add).ok_or_else(bad)?;
            }
        }
        if !number.is_empty() || seen == 0 || (months == 0 && days == 0) {
            return Err(bad());
        }
        // Beyond a thousand years nothing would ever be erased.
        if months > 12_000 || days > 366_000 {
            return Err(bad());
        }
        Ok(Self { months, days })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::Client;

    #[test]
    fn retention_counts_in_the_calendar() {
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap();
        let three: Retention = "P3Y".parse().unwrap();
        assert_eq!(
            three.cutoff(now),
            chrono::Utc.with_ymd_and_hms(2025, 2, 28, 12, 0, 0).unwrap()
        );
        let mixed: Retention = "P1Y6M10D".parse().unwrap();
        assert_eq!(
            mixed.cutoff(now),
            chrono::Utc.with_ymd_and_hms(2026, 8, 19, 12, 0, 0).unwrap()
        );
        let days: Retention = "P90D".parse().unwrap();
        assert_eq!(days.cutoff(now), now - chrono::Duration::days(90));
        for bad in [
            "", "P", "3Y", "P0D", "PT1H", "P1D1Y", "P1Y1Y", "P-1Y", "P1", "P99999Y",
        ] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redaction_leaves_the_shape_and_an_erased_client() {
        let mut p = json!({"title": "Gala", "client": {"name": "Ann", "email": "ann@example.com"},
                           "notes": "allergic to nuts", "headcount": 3});
        assert!(redact("booking.requested", &mut p));
        assert_eq!(
            p,
            json!({"title": "Gala", "client": {"erased": true}, "headcount": 3})
        );
        let client: Client = serde_json::from_value(p["client"].clone()).unwrap();
        assert_eq!(client, Client::erased());
        assert!(
            !redact("booking.requested", &mut p),
            "a second redaction finds nothing"
        );
        let mut confirmed = json!({});
        assert!(!redact("booking.confirmed", &mut confirmed));
    }

    #[test]
    fn the_client_of_an_event_is_its_lower_case_email() {
        let p = json!({"client": {"name": "Ann", "email": " Ann@Example.com"}});
        assert_eq!(
            client_email("booking.requested", &p).as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(
            client_email("booking.updated", &json!({"notes": "x"})),
            None
        );
        assert_eq!(client_email("booking.confirmed", &p), None);
    }
}
