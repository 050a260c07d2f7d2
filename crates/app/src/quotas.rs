//! Quotas (SPEC §12): defining and removing them. What a quota limits is
//! enforced by the one commit path, in every command's transaction
//! ([`muster_store::quotas`]); here an admin's definition is checked and
//! stored, and counts what is booked already.

use muster_domain::TenantId;
use muster_domain::quota::{QuotaInput, valid_name};
use muster_store::quotas::Defined;
use tracing::Instrument;

use crate::{App, AppError, Refusal};

impl App {
    /// Defines quota `name` from `input` (or redefines it): it counts what
    /// is booked from the current period on at once, and limits every
    /// command from then on. Unknown subjects and absurd limits are
    /// refused.
    pub async fn define_quota(
        &self,
        tenant: &TenantId,
        name: &str,
        input: QuotaInput,
    ) -> Result<Result<Defined, Refusal>, AppError> {
        if !valid_name(name) {
            return Ok(Err(Refusal::invalid(
                "name",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            )));
        }
        let spec = match input.validate() {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(e.into())),
        };
        let span = tracing::info_span!("quota.define", quota = name, scope = spec.scope.as_str());
        match self
            .store
            .define_quota(tenant, name, &spec)
            .instrument(span)
            .await
        {
            Ok(defined) => {
                tracing::info!(%tenant, quota = name, counted = defined.counted, "quota defined");
                Ok(Ok(defined))
            }
            Err(e) => Refusal::from_store(e, |_| "subjects".to_owned()).map(Err),
        }
    }

    /// Removes quota `name`; `false`: there was none.
    pub async fn remove_quota(&self, tenant: &TenantId, name: &str) -> Result<bool, AppError> {
        Ok(self.store.remove_quota(tenant, name).await?)
    }
}
