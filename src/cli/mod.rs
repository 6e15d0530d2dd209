//! The commands of the headless CLI, one module each, and what they share: the setup
//! line, Ctrl-C handling, and the checkpoint a long command keeps for `--resume`.

pub mod average;
pub mod eval;
pub mod history;
pub mod job;
pub mod landscape;
pub mod plan;
pub mod run;
pub mod train;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use twa::collective::Collective;
use twa::data::Dataset;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::run::checkpoint::Checkpoint;
use twa::run::config::RunConfig;
use twa::run::progress::Progress;
use twa::run::History;
use twa::train::TrainerState;

use crate::progress::Reporter;

/// Print the adapter and the data set on stderr.
pub fn describe_setup(gpu: &Gpu, data: &Dataset) {
    eprintln!(
        "adapter: {}\ndata: {} ({} train, {} test, {} classes)",
        gpu.describe(),
        data.source.display(),
        data.train.count,
        data.test.count,
        data.classes
    );
    if !data.skipped.is_empty() {
        for (path, reason) in &data.skipped {
            eprintln!("skipped {}: {reason}", path.display());
        }
        eprintln!(
            "skipped {} unreadable image(s) (--skip-bad)",
            data.skipped.len()
        );
    }
}

/// Where the data comes from, as flags shared by the commands that train or build
/// a model.
#[derive(clap::Args)]
pub struct DataArgs {
    /// IDX, CIFAR binary or image-folder (train/CLASS/*.png|jpg and val/ or test/)
    /// data directory, NumPy arrays (a .npz file or a directory of .npy files:
    /// x_train, y_train, x_test, y_test) or CSV tables (train.csv and test.csv), e.g.
    /// /usr/share/datasets/fashion-mnist
    /// [default: the preset's or config's; quick: the shipped subset].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image folders: resize every image (shorter side, then a centre crop) to N × N
    /// (`[data] image_size`) [default: all images must have one size].
    #[arg(long, value_name = "N")]
    pub image_size: Option<usize>,
    /// CSV tables: the column holding the labels (`[data] label_column`) [default:
    /// label].
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// NumPy images stored as [N, C, H, W] (`[data] channels_first`) [default:
    /// [N, H, W, C]].
    #[arg(long)]
    pub channels_first: bool,
    /// Image folders: leave out images that cannot be decoded, each named, with a
    /// count (`[data] skip_bad`) [default: the first one stops the load].
    #[arg(long)]
    pub skip_bad: bool,
    /// Number of classes [default: one more than the largest label; CIFAR: 10 or 100].
    #[arg(long)]
    pub classes: Option<usize>,
    /// Hold out N training samples as a validation split (stratified by class, the
    /// same for every training seed): never trained on; TWA-v and the greedy soup use
    /// them (`[data] holdout`, `holdout_seed`).
    #[arg(long)]
    pub val: Option<usize>,
}

/// The LR schedules' names, as config files write them.
pub const SCHEDULES: &[&str] = &["step", "cosine", "constant", "linear", "warmup-cosine"];
/// TWA's coefficients' names, as config files write them.
pub const COEFFICIENTS: &[&str] = &["orthonormal", "global", "layer"];
/// The coefficients' optimisers' names, as config files write them.
pub const OPTIMIZERS: &[&str] = &["sgd", "adamw"];

/// A flag taking one of `names`, read as the engine's type `T` reads it from a config
/// file (so the engine needs no command-line parsing of its own).
pub fn named<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).map(|name| {
        serde_json::from_value(serde_json::Value::String(name)).expect("a listed name parses")
    })
}

/// The flags of the commands that train and can be resumed (`train`, `run`).
#[derive(clap::Args)]
pub struct RunFlags {
    /// Output directory [default: runs/train, runs/run].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the stopped or killed run in DIR from its checkpoint (give the same
    /// options as the first time).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Under mpirun: BatchNorm statistics over the whole global batch (summed across
    /// the ranks at every BatchNorm), so that R ranks train exactly as one process;
    /// without it each rank normalises with its own share (as PyTorch's DDP).
    #[arg(long)]
    pub sync_bn: bool,
    /// Print the results (the summary of `train`, the table of `run`) as one JSON
    /// object, the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// The run config of `--preset NAME` or `--config FILE`, with `--data DIR`,
/// `--classes N` and `--val N` applied.
pub fn base_config(preset: &str, file: Option<&Path>, data: &DataArgs) -> Result<RunConfig> {
    let mut config = match file {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::preset(preset)?,
    };
    if let Some(dir) = &data.data {
        config.set_data_dir(dir);
    }
    if let Some(n) = data.classes {
        config.data.state_classes(n)?;
    }
    if let Some(n) = data.val {
        config.data.holdout = n;
    }
    if let Some(n) = data.image_size {
        config.data.image_size = n;
    }
    config.data.skip_bad |= data.skip_bad;
    config.data.channels_first |= data.channels_first;
    if let Some(name) = &data.label_column {
        config.data.label_column = name.clone();
    }
    Ok(config)
}

/// A flag set by Ctrl-C, SIGTERM or SIGHUP (what a batch scheduler sends before it
/// kills a job): training stops after the current step and saves. A second signal
/// quits at once (exit 130), the last checkpoint kept.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after this step and saving (a second Ctrl-C or SIGTERM quits at once)"
        );
    });
    if let Err(e) = installed {
        eprintln!("note: Ctrl-C and SIGTERM will not save a checkpoint ({e})");
    }
    stop
}

/// The command line that continues the run in `out`: this process's command line
/// (the program as it was started, e.g. `target/release/twa`, so that the line runs
/// where `twa` is not on PATH) with `--out`/`--resume` replaced by `--resume OUT`.
pub fn resume_command(out: &Path) -> String {
    let mut args = std::env::args();
    let mut words = vec![args.next().unwrap_or_else(|| "twa".into())];
    while let Some(arg) = args.next() {
        if arg == "--out" || arg == "--resume" {
            args.next();
        } else if !(arg.starts_with("--out=") || arg.starts_with("--resume=")) {
            words.push(arg);
        }
    }
    words.push("--resume".into());
    words.push(out.display().to_string());
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word of a command line, quoted so that the user's shell reads it back as
/// it was: POSIX single quotes, or on Windows double quotes (cmd and PowerShell
/// both take them, and a backslash there is a path separator, not an escape).
fn shell_word(word: &str) -> String {
    let plain = |specials: &str| {
        !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || specials.contains(c))
    };
    if cfg!(windows) {
        if plain("\"&|<>^%'`$;,()") {
            word.to_string()
        } else {
            format!("\"{}\"", word.replace('"', "\\\""))
        }
    } else if plain("'\"$\\`&|<>;()*?![]{}#~") {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The output directory: `--resume DIR` continues in DIR (which must exist), else
/// `--out`, else `default`.
pub fn output_dir(out: Option<&Path>, resume: Option<&Path>, default: &str) -> Result<PathBuf> {
    match (out, resume) {
        (Some(out), Some(dir)) if out != dir => Err(Error::Config(format!(
            "--resume {} continues in that directory; drop --out {}",
            dir.display(),
            out.display()
        ))),
        (_, Some(dir)) if !dir.is_dir() => Err(Error::io(
            dir,
            "no run to resume there (not a directory; a run starts with --out)",
        )),
        (_, Some(dir)) | (Some(dir), None) => Ok(dir.to_path_buf()),
        (None, None) => Ok(PathBuf::from(default)),
    }
}

/// How a command that can be resumed begins (see [`Checkpoints::begin`]).
pub enum Begin {
    Afresh,
    From(Box<Checkpoint>),
    /// The run in the directory has finished: nothing to do.
    Finished,
}

/// The checkpoint a command keeps in its output directory, and the run it belongs to.
pub struct Checkpoints<'a> {
    pub path: PathBuf,
    /// The file the finished run writes last before its checkpoint goes.
    pub result: PathBuf,
    pub command: &'static str,
    pub config: &'a RunConfig,
    pub options: BTreeMap<String, String>,
    /// Where the checkpoint this run loaded or last saved continues: (epoch, step).
    pub position: Cell<Option<(usize, usize)>>,
}

impl<'a> Checkpoints<'a> {
    /// The checkpoint of `twa command` writing into `out`, whose last file written is
    /// `result` (in `out`).
    pub fn new(
        out: &Path,
        command: &'static str,
        result: &str,
        config: &'a RunConfig,
        options: BTreeMap<String, String>,
    ) -> Self {
        Checkpoints {
            path: twa::run::checkpoint::path_in(out),
            result: out.join(result),
            command,
            config,
            options,
            position: Cell::new(None),
        }
    }

    /// How the command begins in its directory. Without `--resume`: afresh. With it:
    /// from the checkpoint; as finished (said on stderr) when the run's last file is
    /// there and its checkpoint gone (a run killed between the two still has its
    /// checkpoint); or from the beginning when no checkpoint was saved yet, which is
    /// what the run would have continued from. Every rank of a job must find the same
    /// (they read the directory through a file system they share).
    pub fn begin(&self, world: &dyn Collective, resume: bool, out: &Path) -> Result<Begin> {
        if !resume {
            return Ok(Begin::Afresh);
        }
        let checkpoint = self.path.is_file();
        let finished = !checkpoint && self.result.is_file();
        let mut found = [
            f64::from(u8::from(checkpoint)),
            f64::from(u8::from(finished)),
        ];
        world.sum(&mut found);
        let ranks = world.size() as f64;
        if found.iter().any(|&n| n != 0.0 && n != ranks) {
            return Err(Error::Config(format!(
                "{} of {} ranks find a checkpoint in {} ({} find the finished run): under mpirun, --resume needs the directory on a file system every rank sees",
                found[0],
                world.size(),
                out.display(),
                found[1]
            )));
        }
        if finished {
            eprintln!(
                "the run in {} has finished ({} is written); nothing to resume",
                out.display(),
                self.result.display()
            );
            return Ok(Begin::Finished);
        }
        if !checkpoint {
            eprintln!(
                "note: no checkpoint {} (the run was stopped before its first was saved): starting from the beginning",
                self.path.display()
            );
            return Ok(Begin::Afresh);
        }
        let saved = Checkpoint::load(&self.path)?;
        saved.check_same_run(&self.path, self.command, self.config, &self.options)?;
        self.position
            .set(Some((saved.trainer.epoch, saved.trainer.step)));
        Ok(Begin::From(Box::new(saved)))
    }

    /// Save the trainer's snapshot with `progress` and the metrics `reporter` has seen.
    pub fn save(
        &self,
        trainer: TrainerState,
        progress: &Progress,
        reporter: &RefCell<Reporter>,
    ) -> Result<()> {
        let position = (trainer.epoch, trainer.step);
        Checkpoint {
            command: self.command.into(),
            config: self.config.clone(),
            options: self.options.clone(),
            trainer,
            progress: progress.clone(),
            metrics: reporter.borrow().history.clone(),
        }
        .save(&self.path)?;
        self.position.set(Some(position));
        Ok(())
    }

    /// After the training ends: on a stop or a failure the checkpoint stays, and the
    /// user is told how to continue (if this run has one). On success it stays too,
    /// until [`Checkpoints::discard`] once the run's files are written.
    pub fn finish<T>(&self, result: Result<T>, out: &Path) -> Result<T> {
        match (&result, self.position.get()) {
            (Ok(_), _) => {}
            (Err(e), Some((epoch, step))) => {
                let epoch = epoch + 1;
                let what = if matches!(e, Error::Stopped) {
                    "stopped"
                } else {
                    "failed"
                };
                eprintln!(
                    "{what}; the checkpoint {} continues at epoch {epoch}, step {step}: {}",
                    self.path.display(),
                    resume_command(out)
                );
            }
            (Err(_), None) => {}
        }
        result
    }

    /// Remove the checkpoint: called once every file of the finished run is on disk,
    /// the result file last, so that a kill at any moment leaves either the
    /// checkpoint or the finished files.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The run config a history was made with (its data directory replaced by `data`),
/// the data loaded, and a check that the history's parameters fit that model.
pub fn history_data(
    history: &History,
    path: &Path,
    data: Option<&Path>,
) -> Result<(RunConfig, Dataset)> {
    let mut config = history.config.clone();
    if let Some(dir) = data {
        config.set_data_dir(dir);
    }
    let data = config.load_data()?;
    let model = twa::nn::Model::build(&config.model, data.train.shape, data.classes)?;
    if model.params != history.table {
        return Err(Error::format(
            path,
            format!(
                "the history's parameter table (D = {}) does not match the model for {} (D = {}): {:?} vs {:?}",
                history.dim(),
                data.source.display(),
                model.num_params(),
                history.table.entries.first().map(|e| (&e.name, &e.shape)),
                model.params.entries.first().map(|e| (&e.name, &e.shape)),
            ),
        ));
    }
    Ok((config, data))
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn every_listed_name_is_one_the_engine_reads() {
        fn check<T: serde::de::DeserializeOwned>(names: &[&str]) {
            for name in names {
                serde_json::from_value::<T>(serde_json::Value::String(name.to_string()))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        check::<twa::train::Schedule>(super::SCHEDULES);
        check::<twa::twa::directions::Coefficients>(super::COEFFICIENTS);
        check::<twa::nn::Optimizer>(super::OPTIMIZERS);
    }

    #[test]
    fn words_are_quoted_only_when_the_shell_would_change_them() {
        assert_eq!(shell_word("--preset"), "--preset");
        assert_eq!(shell_word("runs/a"), "runs/a");
        if cfg!(windows) {
            assert_eq!(shell_word(r"runs\a b"), r#""runs\a b""#);
            assert_eq!(shell_word(r"C:\runs\a"), r"C:\runs\a");
            assert_eq!(shell_word(""), r#""""#);
        } else {
            assert_eq!(shell_word("runs/a b"), "'runs/a b'");
            assert_eq!(shell_word("it's"), r"'it'\''s'");
            assert_eq!(shell_word("$HOME"), "'$HOME'");
            assert_eq!(shell_word(""), "''");
        }
    }
}
