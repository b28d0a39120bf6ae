//! Progress bars (bytes, rate, ETA; one per file under a `MultiProgress`) and status lines on
//! standard error. Bars are drawn only when standard error is a terminal and `--quiet` is not
//! given; status lines are kept above the bars.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

const TEMPLATE: &str = "{prefix:24!} {msg:>9} [{bar:28}] {bytes:>10}/{total_bytes:<10} \
                        {binary_bytes_per_sec:>12} ETA {eta:>4}";

/// Where progress and status lines go.
#[derive(Clone, Debug)]
pub struct Ui {
    multi: MultiProgress,
    quiet: bool,
}

impl Ui {
    /// Bars on standard error when it is a terminal and `quiet` is false; status lines unless
    /// `quiet`.
    pub fn new(quiet: bool) -> Self {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Ui {
            multi: MultiProgress::with_draw_target(target),
            quiet,
        }
    }

    /// A new bar of `total` bytes labelled `name`.
    pub fn bar(&self, name: &str, total: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix(name.to_owned()),
        );
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar
    }

    /// Clears a finished bar and leaves one status line in its place, e.g. `big.bin: uploaded
    /// 1.00 GiB in 12.9 s` for `done` = (`uploaded`, the bytes that went); a failed transfer's
    /// bar is just cleared (the error says the rest).
    pub fn finish(&self, bar: &ProgressBar, name: &str, done: Option<(&str, u64)>) {
        bar.finish_and_clear();
        if let Some((verb, bytes)) = done {
            self.note(format!(
                "{name}: {verb} {} in {:.1} s",
                HumanBytes(bytes),
                bar.elapsed().as_secs_f64()
            ));
        }
    }

    /// A status line (`keyhole: ...`) on standard error, above the bars; silent with `--quiet`.
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            self.multi.suspend(|| eprintln!("keyhole: {message}"));
        }
    }

    /// An error line (`error: ...`) on standard error, always shown.
    pub fn error(&self, message: impl std::fmt::Display) {
        self.multi.suspend(|| eprintln!("error: {message}"));
    }

    /// Runs `f` (e.g. a print to standard output) with the bars cleared, so lines and bars do
    /// not tear each other on a terminal.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }
}
