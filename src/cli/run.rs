//! `twa run`: the whole pipeline (SGD with sampling, SWA, TWA, the full SGD run) with
//! one table at the end; a checkpoint after every SGD epoch makes `--resume` possible.

use super::job::Job;
use super::{
    base_config, describe_setup, output_dir, stop_on_ctrl_c, Begin, Checkpoints, DataArgs, RunFlags,
};
use crate::progress::Reporter;
use clap::Args;
use pollster::block_on;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use twa::error::Result;
use twa::run::pipeline::{self, Checkpointing, Resume};
use twa::run::progress::Row;

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline preset: head (average the first half of training), tail (after an SWA
    /// phase), head-cnn (the head stage on the conv net) or spirals (the head stage on
    /// generated 2-D spirals, seconds on a CPU).
    #[arg(long, default_value = "head", conflicts_with = "config")]
    preset: String,
    /// TOML config with [pipeline] and [twa] sections; replaces the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Random seed [preset: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// TWA learning rate [preset: head 2, tail 0.05].
    #[arg(long)]
    twa_lr: Option<f64>,
    /// TWA epochs [preset: 2].
    #[arg(long)]
    twa_epochs: Option<usize>,
    #[command(flatten)]
    run: RunFlags,
}

pub fn run(job: &Job, adapter: Option<&str>, args: RunArgs) -> Result<()> {
    let mut config = base_config(&args.preset, args.config.as_deref(), &args.data)?;
    if let Some(seed) = args.seed {
        config.train.seed = seed;
    }
    if let Some(lr) = args.twa_lr {
        config.twa.lr = lr;
    }
    if let Some(epochs) = args.twa_epochs {
        config.twa.epochs = epochs;
    }
    config.train.sync_bn |= args.run.sync_bn;
    config.train.validate()?;
    config.twa.validate()?;
    let out = output_dir(
        args.run.out.as_deref(),
        args.run.resume.as_deref(),
        "runs/run",
    )?;
    let _held = twa::outdir::OutputDir::claim(&out)?;
    let checkpoints = Checkpoints::new(&out, "run", RESULTS_FILE, &config, BTreeMap::new());
    let saved = match checkpoints.begin(&*job.world, args.run.resume.is_some(), &out)? {
        Begin::Finished => return Ok(()),
        Begin::From(saved) => Some(*saved),
        Begin::Afresh => None,
    };
    let data = config.load_data()?;
    let gpu = job.gpu(adapter)?;
    describe_setup(&gpu, &data);
    let reporter = RefCell::new(Reporter::new(Some(out.join("metrics.jsonl"))));
    let resume = saved.map(|saved| {
        eprintln!(
            "resuming the {} phase at epoch {}, step {}",
            saved.progress.phase,
            saved.trainer.epoch + 1,
            saved.trainer.step
        );
        reporter.borrow_mut().resume(saved.metrics);
        Resume {
            trainer: saved.trainer,
            progress: saved.progress,
        }
    });
    let rows = block_on(pipeline::execute(
        &gpu,
        &*job.world,
        &data,
        &config,
        Some(&out),
        &stop_on_ctrl_c(),
        &mut |e| reporter.borrow_mut().event(e),
        Checkpointing {
            resume,
            save: Some(Box::new(|t, p| checkpoints.save(t, p, &reporter))),
        },
    ));
    let mut reporter = reporter.into_inner();
    reporter.finish();
    let outcome = checkpoints.finish(rows, &out)?;
    let rows = outcome.rows;
    if let Some(e) = reporter.write_error.take() {
        return Err(e);
    }
    print_rows(&rows, &checkpoints.result)?;
    checkpoints.discard();
    if args.run.json {
        println!(
            "{}",
            serde_json::json!({
                "stage": format!("{:?}", config.pipeline.stage).to_lowercase(),
                "seed": config.train.seed,
                "rows": rows,
                "ranks": job.world.size(),
                "bytes_per_rank": outcome.bytes_per_rank,
            })
        );
    }
    Ok(())
}

/// The file a finished `twa run` writes last.
const RESULTS_FILE: &str = "results.json";

/// Print the table and write it as JSON to `results`.
fn print_rows(rows: &[Row], results: &Path) -> Result<()> {
    println!(
        "{:<28} {:>7} {:>10} {:>10} {:>9}",
        "method", "epochs", "test_acc", "test_loss", "seconds"
    );
    for r in rows {
        println!(
            "{:<28} {:>7} {:>9.2}% {:>10.4} {:>9.1}",
            r.method,
            r.epochs,
            100.0 * r.test_acc,
            r.test_loss,
            r.seconds
        );
    }
    let json = serde_json::to_string(rows).expect("rows serialise");
    twa::files::write_atomic(results, json.as_bytes())
}
