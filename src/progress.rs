//! Terminal reporting for the CLI: a progress bar per epoch, one line per finished
//! epoch and per pipeline phase (all on stderr, so stdout stays for tables and JSON),
//! and metrics.jsonl rewritten after every epoch.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use twa::error::Result;
use twa::train::{EpochMetrics, Event};

/// Turns engine events into terminal output and the metrics file.
pub struct Reporter {
    bar: Option<ProgressBar>,
    style: ProgressStyle,
    phase: String,
    metrics_path: Option<PathBuf>,
    /// Every epoch seen, with the phase it belonged to.
    pub history: Vec<(String, EpochMetrics)>,
    /// The first failure to write the metrics file.
    pub write_error: Option<twa::error::Error>,
}

impl Reporter {
    /// A reporter writing `metrics_path` (JSON lines) if given.
    pub fn new(metrics_path: Option<PathBuf>) -> Reporter {
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        Reporter {
            bar: None,
            style,
            phase: String::new(),
            metrics_path,
            history: Vec::new(),
            write_error: None,
        }
    }

    /// Handle one event.
    pub fn event(&mut self, event: Event) {
        match event {
            Event::Phase(name) => {
                eprintln!("== {name}");
                self.phase = name;
            }
            Event::EpochStart { epoch, steps } => {
                let bar = ProgressBar::new(steps as u64)
                    .with_style(self.style.clone())
                    .with_prefix(format!("epoch {epoch}"));
                self.bar = Some(bar);
            }
            Event::Step { step } => {
                if let Some(b) = &self.bar {
                    b.set_position(step as u64);
                }
            }
            Event::Running { loss, acc } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
                }
            }
            Event::Epoch(m) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                // TWA's epochs are tested with the BatchNorm statistics its steps left;
                // its result row comes after they are re-estimated, so it differs.
                let test = if self.phase.starts_with("TWA") {
                    "test before BN re-estimation"
                } else {
                    "test"
                };
                eprintln!(
                    "epoch {:>3}  lr {:.4}  train loss {:.4} acc {:.2}%  {test} loss {:.4} acc {:.2}%  {:.1}s",
                    m.epoch,
                    m.lr,
                    m.train_loss,
                    100.0 * m.train_acc,
                    m.test_loss,
                    100.0 * m.test_acc,
                    m.seconds
                );
                self.history.push((self.phase.clone(), m));
                if let Err(e) = self.write_metrics() {
                    self.write_error.get_or_insert(e);
                }
            }
            Event::Result {
                method,
                test_acc,
                test_loss,
                ..
            } => eprintln!(
                "   {method}: test acc {:.2}%  loss {test_loss:.4}{}",
                100.0 * test_acc,
                if method.starts_with("TWA") || method.starts_with("SWA") {
                    " (BatchNorm re-estimated)"
                } else {
                    ""
                }
            ),
            // The final table and the written files carry these.
            Event::Coefficients { .. } | Event::Samples(_) => {}
        }
    }

    /// Continue a resumed run's metrics: `history` replaces what was seen and the
    /// metrics file is rewritten to hold exactly it.
    pub fn resume(&mut self, history: Vec<(String, EpochMetrics)>) {
        self.history = history;
        if let Err(e) = self.write_metrics() {
            self.write_error.get_or_insert(e);
        }
    }

    fn write_metrics(&self) -> Result<()> {
        let Some(path) = &self.metrics_path else {
            return Ok(());
        };
        let mut text = String::new();
        for (phase, m) in &self.history {
            let mut value = serde_json::to_value(m).expect("metrics serialise");
            if !phase.is_empty() {
                value["phase"] = phase.clone().into();
            }
            text.push_str(&value.to_string());
            text.push('\n');
        }
        twa::files::write_atomic(path, text.as_bytes())
    }

    /// Clear a bar left by an interrupted epoch.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
