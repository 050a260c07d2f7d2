//! Retention (SPEC §12, `MUSTER_CLIENT_RETENTION`): a client whose last
//! booking ended longer ago than the retention is erased by itself, through
//! the same use case as an admin's erasure, recorded as done by
//! `system:retention`. Every worker process looks, at start and then every
//! `client_retention_every`; two that erase one client at once each record
//! an erasure, the second finding nothing more.

use std::time::{Duration, Instant};

use chrono::Utc;
use muster_app::Outcome;
use muster_projections::ReadModel;
use muster_store::CommandContext;
use uuid::Uuid;

use crate::Shared;

/// Clients erased per look, at most (the next look takes the rest).
const PER_LOOK: i64 = 500;

/// Erases the clients past their retention until shutdown; nothing when
/// no retention is set.
pub(crate) async fn erase_past_retention(rt: Shared) {
    let Some(retention) = rt.config.client_retention else {
        return;
    };
    loop {
        let cutoff = retention.cutoff(Utc::now());
        match rt.store.clients_past_retention(cutoff, PER_LOOK).await {
            Ok(clients) => {
                for (tenant, email) in clients {
                    let ctx = CommandContext {
                        tenant,
                        actor: "system:retention".to_owned(),
                        correlation_id: format!("retention-{}", Uuid::now_v7()),
                        command_id: Uuid::now_v7(),
                        if_match: None,
                        idempotency: None,
                    };
                    match rt.app.erase_client(&ctx, &email).await {
                        Ok(outcome) => {
                            metrics::counter!("muster_client_retention_erasures_total")
                                .increment(1);
                            if let Outcome::Executed(executed) = outcome {
                                read_model_reaches(&rt, executed.outcome.position).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "a client past retention was not erased; will retry");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for clients past retention; will retry")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(rt.config.client_retention_every) => {}
            () = rt.shutdown.cancelled() => return,
        }
    }
}

/// Waits (a while at most) until the bookings read model has scrubbed what
/// an erasure at `position` named: until then it still shows the client's
/// email, and the next look would find them again.
async fn read_model_reaches(rt: &Shared, position: i64) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) && !rt.shutdown.is_cancelled() {
        match ReadModel::Bookings.applied(&rt.store).await {
            Ok(applied) if applied >= position => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the bookings projection's position");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
