//! The training worker: a task that owns its own device (a thread natively, a future
//! on the web: [`crate::spawn`]), runs the `twa run` pipeline and sends every event
//! over a channel. Pause blocks the worker between steps (natively); Stop ends the run
//! at the next step.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use twa::data::Dataset;
use twa::error::Error;
use twa::run::config::RunConfig;
use twa::run::progress::Row;
use twa::train::Event;

use crate::spawn::{open_gpu, spawn, Task};

/// What the worker reports.
pub enum Msg {
    /// The adapter the run uses.
    Adapter(String),
    /// The data set, loaded (shared with the landscape worker).
    Data(Arc<Dataset>),
    Event(Event),
    /// The final table.
    Finished(Vec<Row>),
    Stopped,
    /// One line saying what went wrong.
    Failed(String),
}

/// Pause and stop switches shared with the worker.
#[derive(Clone, Default)]
pub struct Control {
    pub pause: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

/// A running worker.
pub struct Run {
    pub control: Control,
    pub messages: Receiver<Msg>,
    task: Task,
}

impl Run {
    /// Start `config`, writing its files under `out`; `wake` is called after each message.
    pub fn start(config: RunConfig, out: PathBuf, wake: impl Fn() + Send + 'static) -> Run {
        let (tx, rx) = std::sync::mpsc::channel();
        let control = Control::default();
        let shared = control.clone();
        let task = spawn("twa-train", move || async move {
            let send = |m: Msg| {
                let _ = tx.send(m);
                wake();
            };
            match work(&config, &out, &shared, &send).await {
                Ok(rows) => send(Msg::Finished(rows)),
                Err(Error::Stopped) => send(Msg::Stopped),
                Err(e) => send(Msg::Failed(e.to_string())),
            }
        });
        Run {
            control,
            messages: rx,
            task,
        }
    }

    /// Whether the worker has ended.
    pub fn finished(&self) -> bool {
        self.task.finished()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        self.control.pause.store(false, Ordering::Relaxed);
        self.task.join();
    }
}

async fn work(
    config: &RunConfig,
    out: &std::path::Path,
    control: &Control,
    send: &dyn Fn(Msg),
) -> twa::error::Result<Vec<Row>> {
    // The browser has no files: the run's weights stay in memory there.
    let out = (!cfg!(target_arch = "wasm32")).then_some(out);
    if let Some(out) = out {
        twa::files::ensure_writable_dir(out)?;
    }
    let gpu = open_gpu()?;
    send(Msg::Adapter(gpu.describe()));
    #[cfg(not(target_arch = "wasm32"))]
    let data = Arc::new(config.load_data()?);
    #[cfg(target_arch = "wasm32")]
    let data = Arc::new(crate::page::load_data(config).await?);
    send(Msg::Data(data.clone()));
    let mut observer = |e: Event| {
        #[cfg(not(target_arch = "wasm32"))]
        while control.pause.load(Ordering::Relaxed) && !control.stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        send(Msg::Event(e));
    };
    twa::run::pipeline::execute(
        &gpu,
        &twa::collective::Single,
        &data,
        config,
        out,
        &control.stop,
        &mut observer,
        twa::run::pipeline::Checkpointing::none(),
    )
    .await
    .map(|outcome| outcome.rows)
}

/// Pending messages of a channel, without blocking.
pub fn drain<T>(rx: &Receiver<T>) -> Vec<T> {
    rx.try_iter().collect()
}
