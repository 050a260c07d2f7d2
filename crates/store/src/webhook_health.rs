//! The webhook aggregate's working set: the health columns of `webhooks`
//! (`disabled_at`, `disabled_reason`), written here only, in the commit of
//! the events that change them, so that the delivery side (which owns the
//! rest of the table, `failing_since` among it) sees a disable as soon as
//! it is recorded, and never one that was not.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

/// Disables webhook `webhook_id` for `reason`, or (`None`) enables it
/// again with its failure clock started over. A webhook deleted meanwhile
/// is left as it is.
pub(crate) async fn set(
    conn: &mut PgConnection,
    tenant: &str,
    webhook_id: Uuid,
    disabled: Option<&str>,
) -> Result<(), StoreError> {
    match disabled {
        Some(reason) => {
            sqlx::query!(
                r#"update webhooks set disabled_at = now(), disabled_reason = $3
                    where tenant_id = $1 and webhook_id = $2"#,
                tenant,
                webhook_id,
                reason,
            )
            .execute(conn)
            .await?
        }
        None => {
            sqlx::query!(
                r#"update webhooks
                      set disabled_at = null, disabled_reason = null, failing_since = null
                    where tenant_id = $1 and webhook_id = $2"#,
                tenant,
                webhook_id,
            )
            .execute(conn)
            .await?
        }
    };
    Ok(())
}
