//! Arrivals at a fixed rate, on time to within tens of microseconds: the
//! one pacer of every open loop.
//!
//! An open loop counts each request's latency from its scheduled start, so
//! that a stalled server cannot hide behind a stalled client; a start the
//! load generator makes late is charged to the server too. tokio's timer
//! has a 1 ms tick and rounds every sleep up to the next one: paced by it,
//! requests left 0–1 ms after their schedule, which the pgbench baseline
//! (pacing itself with microsecond sleeps) did not pay. Here a thread of
//! its own sleeps to each instant (`nanosleep`: the kernel's high-resolution
//! timers, 50 µs of slack) and hands it to the runtime, and the pacer
//! reports how late the arrivals reached the runtime, so a late load
//! generator shows instead of passing for a slow server.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

/// The arrivals of one open loop, in order.
pub struct Arrivals {
    scheduled: mpsc::UnboundedReceiver<(usize, Instant)>,
    lateness: Histogram<u64>,
}

/// `total` arrivals at `rate` per second, the first at once.
pub fn arrivals(rate: u64, total: usize) -> Arrivals {
    let (sender, scheduled) = mpsc::unbounded_channel();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    std::thread::spawn(move || {
        let started = Instant::now();
        for i in 0..total {
            let at = started + interval.mul_f64(i as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if sender.send((i, at)).is_err() {
                return;
            }
        }
    });
    Arrivals {
        scheduled,
        lateness: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    }
}

impl Arrivals {
    /// The next arrival, once it is due: its index and its scheduled
    /// instant (latency counts from there). `None` after the last.
    pub async fn next(&mut self) -> Option<(usize, Instant)> {
        let (i, at) = self.scheduled.recv().await?;
        self.lateness
            .saturating_record(at.elapsed().as_micros().max(1) as u64);
        Some((i, at))
    }

    /// One line on how late the arrivals reached the runtime.
    pub fn report(&self) {
        println!(
            "pacing:   arrivals reached the runtime p50 {} µs, p99 {} µs after their schedule",
            self.lateness.value_at_quantile(0.5),
            self.lateness.value_at_quantile(0.99),
        );
    }
}
