//! Progress on a terminal: a bar over a timed run, a spinner over a long
//! seed. Without a terminal (logs, CI) each is one plain line instead.
//! Both go when the returned guard is dropped.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Clears its bar when dropped.
pub(crate) struct Shown(Option<ProgressBar>);

impl Drop for Shown {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A run of `seconds` named `label`: a bar filling second by second.
pub(crate) fn timed(label: String, seconds: u64) -> Shown {
    if !std::io::stderr().is_terminal() {
        eprintln!("{label}, {seconds} s");
        return Shown(None);
    }
    let bar = ProgressBar::new(seconds).with_prefix(label);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} s")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let ticking = bar.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !ticking.is_finished() && ticking.position() < seconds {
            tick.tick().await;
            ticking.inc(1);
        }
    });
    Shown(Some(bar))
}

/// Work of unknown length named `label`: a spinner.
pub(crate) fn working(label: &str) -> Shown {
    if !std::io::stderr().is_terminal() {
        eprintln!("{label}...");
        return Shown(None);
    }
    let spinner = ProgressBar::new_spinner().with_message(label.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    Shown(Some(spinner))
}
