//! Holds: place one, release it, and record the expiry of those whose
//! time ran out (for the feed; they stopped counting at their expiry
//! instant whatever this does).

use chrono::{Duration, Utc};
use muster_domain::hold::{Hold, HoldCommand};
use muster_domain::time::TimeRange;
use muster_store::CommandContext;
use uuid::Uuid;

use crate::decision::OnStream;
use crate::{Answer, App, AppError, Outcome};

impl App {
    /// Places a hold on `resource_id` for `range` until `ttl` from now,
    /// admitted by the same rule as a reservation.
    pub async fn place_hold(
        &self,
        ctx: &CommandContext,
        resource_id: Uuid,
        range: TimeRange,
        ttl: Duration,
    ) -> Answer<Hold> {
        let decision = OnStream::<Hold> {
            name: "hold.place",
            stream_id: Uuid::now_v7(),
            command: HoldCommand::Place {
                resource_id,
                range,
                ttl,
                now: Utc::now(),
                offer_for: None,
                pool_id: None,
            },
            resource_field: "resource_id",
        };
        let answer = self.run(ctx, decision).await?;
        if let Outcome::Executed(_) = answer {
            metrics::counter!("muster_holds_total", "outcome" => "placed").increment(1);
        }
        Ok(answer)
    }

    /// Releases hold `id` before it expires (again: nothing changes).
    pub async fn release_hold(&self, ctx: &CommandContext, id: Uuid) -> Answer<Hold> {
        let decision = OnStream::<Hold> {
            name: "hold.release",
            stream_id: id,
            command: HoldCommand::Release,
            resource_field: "resource_id",
        };
        let answer = self.run(ctx, decision).await?;
        if let Outcome::Executed(executed) = &answer
            && executed.outcome.appended > 0
        {
            metrics::counter!("muster_holds_total", "outcome" => "released").increment(1);
        }
        Ok(answer)
    }

    /// Records `hold.expired` for the holds past their expiry instant;
    /// answers how many it recorded. Several processes may sweep at once:
    /// a hold's stream version lets one of them record it, and the others
    /// decide there is nothing to do.
    pub async fn expire_holds(&self) -> Result<usize, AppError> {
        let mut expired = 0;
        for (tenant, hold_id) in self.store.holds_past_expiry().await? {
            let ctx = crate::system_context(tenant, "system:hold-sweeper");
            let decision = OnStream::<Hold> {
                name: "hold.expire",
                stream_id: hold_id,
                command: HoldCommand::Expire { now: Utc::now() },
                resource_field: "resource_id",
            };
            match self.run(&ctx, decision).await? {
                Outcome::Executed(executed) if executed.outcome.appended > 0 => expired += 1,
                Outcome::Refused(refusal) => {
                    tracing::warn!(%hold_id, %refusal, "an expired hold could not be recorded");
                }
                _ => {}
            }
        }
        if expired > 0 {
            metrics::counter!("muster_holds_total", "outcome" => "expired")
                .increment(expired as u64);
        }
        Ok(expired)
    }
}

/// Records expired holds, and bookings past a check-in or approval
/// deadline, every `every` until `stop` completes (or the store's pool is
/// closed).
pub async fn sweep_expired(app: App, every: std::time::Duration, stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(every);
    let mut stop = std::pin::pin!(stop);
    while !app.store.pool().is_closed() {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        match app.expire_holds().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "expired holds recorded"),
            Err(e) => tracing::warn!(error = %e, "could not record expired holds"),
        }
        match app.close_overdue_bookings().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(closed = n, "no-shows and expired requests recorded"),
            Err(e) => tracing::warn!(error = %e, "could not record overdue bookings"),
        }
    }
}
