//! The progress bar, shown only on a terminal.

use crate::config::{Config, Stop};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub fn progress_bar(config: &Config, label: &str) -> ProgressBar {
    if config.no_progress || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let (length, template) = match config.stop() {
        Stop::Requests(total) => (
            total,
            "{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} req  {msg}",
        ),
        Stop::After(limit) => (
            limit.as_millis() as u64,
            "{prefix:>10} [{elapsed_precise}] {bar:30} {msg}",
        ),
    };
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}
