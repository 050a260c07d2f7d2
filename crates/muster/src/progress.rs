//! Progress of long commands (`muster projections rebuild`): a bar on a
//! terminal, where people expect one, and a plain line per report
//! otherwise (logs, CI), where a bar's redraws would be noise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
pub enum Progress {
    /// A bar on the terminal behind standard error.
    Bar(ProgressBar),
    /// A line per report on standard error.
    Lines,
}

impl Progress {
    /// Progress of the task `what`, on standard error.
    pub fn on_stderr(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        let bar = ProgressBar::new(0).with_prefix(what.to_owned());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} ({percent}%) {msg}, ETA {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Self::Bar(bar)
    }

    /// At `position` of `total`, going at `rate` (shown on the bar);
    /// `line` is what a plain report prints.
    pub fn report(&self, position: u64, total: u64, rate: &str, line: impl FnOnce() -> String) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(position);
                bar.set_message(rate.to_owned());
            }
            Self::Lines => eprintln!("{}", line()),
        }
    }

    /// Done: the bar goes, and `summary` is printed either way.
    pub fn finish(&self, summary: &str) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
        eprintln!("{summary}");
    }
}
