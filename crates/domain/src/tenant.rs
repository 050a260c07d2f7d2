//! Tenants: every entity belongs to one, and nothing crosses tenants.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tenant's id: 1 to 63 lower case letters, digits, `-` or `_`, starting
/// with a letter or digit (the `tenants` table's check).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a text is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("use 1 to 63 lower case letters, digits, '-' or '_', starting with a letter or digit")]
pub struct InvalidTenantId;

impl TenantId {
    /// `text` as a tenant id, if it is one.
    pub fn parse(text: &str) -> Result<Self, InvalidTenantId> {
        if Self::is_valid(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidTenantId)
        }
    }

    /// Whether `text` is a valid tenant id.
    pub fn is_valid(text: &str) -> bool {
        let mut chars = text.chars();
        text.len() <= 63
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    /// The id as text (what the database stores).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if Self::is_valid(&text) {
            Ok(Self(text))
        } else {
            Err(InvalidTenantId)
        }
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_lower_case_names() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("acme-2_b").is_ok());
        assert!(TenantId::parse("0acme").is_ok());
        for bad in ["", "Acme", "-acme", "ac me", "acmé", &"a".repeat(64)] {
            assert_eq!(TenantId::parse(bad), Err(InvalidTenantId), "{bad:?}");
        }
        assert_eq!(TenantId::parse(&"a".repeat(63)).unwrap().as_str().len(), 63);
    }

    #[test]
    fn tenant_ids_serialise_as_text_and_refuse_invalid_text() {
        let id = TenantId::parse("acme").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme\"");
        assert_eq!(serde_json::from_str::<TenantId>("\"acme\"").unwrap(), id);
        assert!(serde_json::from_str::<TenantId>("\"ACME\"").is_err());
    }
}
