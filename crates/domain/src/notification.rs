//! Notification rules: which targets a webhook subscription may have, which
//! addresses are private, and which events a subscription wants.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::FieldError;

/// Longest webhook URL, in characters.
pub const MAX_URL: usize = 2_000;

/// Where a subscription's deliveries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    /// An `http(s)://` URL, POSTed to.
    Http(Url),
    /// A `mailto:` address, sent through SMTP.
    Email(String),
}

impl WebhookTarget {
    /// Parses and vets a subscription target. Loopback, private, link-local
    /// and other non-public addresses are refused unless `allow_private`
    /// (the operator's `MUSTER_ALLOW_PRIVATE_WEBHOOKS`); host names are
    /// checked again against what they resolve to when delivering.
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self, FieldError> {
        let invalid = |m: &str| FieldError::new("url", m);
        if raw.chars().count() > MAX_URL {
            return Err(invalid("must be at most 2000 characters"));
        }
        // A URL with control characters (CR/LF) would be echoed back and
        // logged as given; the parser would silently drop them.
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        let url = Url::parse(raw).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
        match url.scheme() {
            "mailto" => {
                let address = url.path();
                let valid = address.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !address.contains([',', ' '])
                });
                if !valid || url.query().is_some() {
                    return Err(invalid("must be mailto:<one address>"));
                }
                Ok(WebhookTarget::Email(address.to_owned()))
            }
            "http" | "https" => {
                // `http:///x` parses as host `x`; what is stored must say
                // what is called.
                let authority = raw.split_once("://").map_or("", |(_, rest)| rest);
                if authority.starts_with('/') || authority.is_empty() {
                    return Err(invalid("needs a host"));
                }
                if url.port() == Some(0) {
                    return Err(invalid("must not use port 0"));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid("must not carry credentials; use the secret"));
                }
                let private = match url.host() {
                    None => return Err(invalid("needs a host")),
                    Some(Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
                    Some(Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
                    Some(Host::Domain(name)) => is_local_name(name),
                };
                if private && !allow_private {
                    return Err(invalid(
                        "points to a private or loopback address, which this server does not deliver to",
                    ));
                }
                Ok(WebhookTarget::Http(url))
            }
            _ => Err(invalid("must be an http, https or mailto URL")),
        }
    }
}

/// Names that always mean this machine or its private network.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
}

/// Whether `ip` is not a public unicast address: loopback, private,
/// link-local, carrier-grade NAT, unspecified, multicast, documentation,
/// benchmarking, or an IPv6 form of one of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    let segments = ip.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) and 6to4 (2002:aabb:ccdd::)
    // addresses carry an IPv4 address that routers may deliver to.
    if segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        let o = ip.octets();
        return is_private_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_private_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Teredo hides its IPv4 addresses; never deliver through it.
    if segments[0] == 0x2001 && segments[1] == 0 {
        return true;
    }
    let first = segments[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64
}

/// Whether a subscription filtering on `filters` wants `event_type`: an
/// exact name, a `prefix.*` wildcard, or `*` for everything.
pub fn wants(filters: &[String], event_type: &str) -> bool {
    filters.iter().any(|f| {
        f == "*"
            || f == event_type
            || f.strip_suffix(".*").is_some_and(|prefix| {
                event_type
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
    })
}

/// Checks a subscription's event-type filters.
pub fn validate_filters(filters: &[String]) -> Result<(), FieldError> {
    if filters.is_empty() || filters.len() > 50 {
        return Err(FieldError::new(
            "event_types",
            "must name 1 to 50 event types",
        ));
    }
    for (i, f) in filters.iter().enumerate() {
        let name = f.strip_suffix(".*").unwrap_or(f);
        let ok = f == "*"
            || (!name.is_empty()
                && name.len() <= 100
                && name.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }));
        if !ok {
            return Err(FieldError::new(
                format!("event_types[{i}]"),
                "must be a dotted lower-case event type, `prefix.*` or `*`",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_and_loopback_targets_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "https://10.1.2.3/",
            "https://192.168.0.10/",
            "https://172.16.5.4/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://metadata.google.internal/",
        ] {
            let e = WebhookTarget::parse(url, false).unwrap_err();
            assert_eq!(e.field, "url", "{url}");
            assert!(WebhookTarget::parse(url, true).is_ok(), "{url}");
        }
        for url in [
            "http://[::127.0.0.1]/x",
            "http://[::10.0.0.1]/x",
            "http://[2002:7f00:1::]/x",
            "http://[2002:c0a8:101::1]/x",
            "http://[2001:0:4136:e378::1]/x",
        ] {
            assert!(WebhookTarget::parse(url, false).is_err(), "{url}");
        }
        assert!(WebhookTarget::parse("http://[2002:808:808::1]/x", false).is_ok());
        assert!(WebhookTarget::parse("https://hooks.example.com/x", false).is_ok());
        assert!(WebhookTarget::parse("https://8.8.8.8/x", false).is_ok());
    }

    #[test]
    fn refuses_urls_that_do_not_say_what_is_called() {
        for url in [
            "http:///x",
            "https:///hooks.example.com/x",
            "https://hooks.example.com:0/x",
            "https://hooks.example.com/x\r\nX-Evil: 1",
            "https://hooks.example.com/\nx",
        ] {
            assert!(WebhookTarget::parse(url, true).is_err(), "{url:?}");
        }
        assert!(WebhookTarget::parse("https://hooks.example.com:8443/x", false).is_ok());
    }

    #[test]
    fn parses_mailto_and_refuses_other_schemes() {
        assert_eq!(
            WebhookTarget::parse("mailto:ops@example.com", false).unwrap(),
            WebhookTarget::Email("ops@example.com".into())
        );
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "mailto:nobody",
            "mailto:a@example.com,b@example.com",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(WebhookTarget::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_exact_names_prefixes_and_everything() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&f(&["booking.confirmed"]), "booking.confirmed"));
        assert!(!wants(&f(&["booking.confirmed"]), "booking.cancelled"));
        assert!(wants(&f(&["booking.*"]), "booking.cancelled"));
        assert!(!wants(&f(&["booking.*"]), "bookings.x"));
        assert!(wants(&f(&["*"]), "deployment.step"));
        assert!(validate_filters(&f(&["booking.*", "deployment.step", "*"])).is_ok());
        assert!(validate_filters(&f(&["Booking"])).is_err());
        assert!(validate_filters(&[]).is_err());
    }
}
