//! API keys: create one (shown once), list them, revoke one. A revoked key
//! is refused by every process within two seconds (each verifies a key
//! again after a second in its cache). The HTTP API and the CLI both call
//! these, so a key's name follows one rule.

use muster_domain::TenantId;
use muster_store::Role;
use muster_store::keys::{CreatedKey, KeyInfo};
use uuid::Uuid;

use crate::{App, AppError, Outcome, Refusal};

/// Longest name a key may have, in characters.
pub const MAX_NAME: usize = 200;

impl App {
    /// Creates a key of `tenant` with `role`, named `name` (trimmed; blank
    /// is no name). The key in clear is in the answer, and nowhere else.
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        role: Role,
        name: Option<&str>,
    ) -> Result<Outcome<CreatedKey>, AppError> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.chars().count() > MAX_NAME || n.chars().any(char::is_control)) {
            return Ok(Outcome::Refused(Refusal::invalid(
                "name",
                format!("must be at most {MAX_NAME} characters, without control characters"),
            )));
        }
        let created = self.store.create_named_key(tenant, role, name).await?;
        metrics::counter!("muster_keys_total", "change" => "created").increment(1);
        Ok(Outcome::Executed(created))
    }

    /// The keys of `tenant`, revoked ones included, never in clear.
    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyInfo>, AppError> {
        Ok(self.store.list_keys(tenant).await?)
    }

    /// Revokes key `id` of `tenant` (again: nothing changes).
    pub async fn revoke_key(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Outcome<KeyInfo>, AppError> {
        let Some(revoked) = self.store.revoke_key(tenant, id).await? else {
            return Ok(Outcome::Refused(Refusal::NotFound { what: "key".into() }));
        };
        metrics::counter!("muster_keys_total", "change" => "revoked").increment(1);
        Ok(Outcome::Executed(revoked))
    }
}
