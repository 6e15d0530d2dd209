//! `twa train`: train a model from a preset or config, optionally sampling its
//! trajectory; a checkpoint after every epoch (and at Ctrl-C) makes `--resume` possible.

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
use std::time::Instant;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::outdir::OutputDir;
use twa::run::config::RunConfig;
use twa::run::progress::{train_with_checkpoints, Progress};
use twa::run::History;
use twa::train::SamplePlan;
use twa::train::{Schedule, Trainer};

/// The file a finished `twa train` writes last.
const MODEL_FILE: &str = "model.safetensors";

#[derive(Args)]
pub struct TrainArgs {
    /// Preset from assets/presets (quick: shipped subset, 8 epochs; fashion-mnist: full set, 20 epochs; cnn: the conv net on the full set; resnet: pre-act ResNet-20 on a CIFAR-10 directory).
    #[arg(long, default_value = "quick", conflicts_with = "config")]
    preset: String,
    /// TOML config file (see `twa config` for every field); replaces the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Epochs [preset: 8 quick, 20 fashion-mnist].
    #[arg(long)]
    epochs: Option<usize>,
    /// Base learning rate [preset: 0.1].
    #[arg(long)]
    lr: Option<f64>,
    /// SGD momentum [preset: 0.9].
    #[arg(long)]
    momentum: Option<f64>,
    /// Weight decay [preset: 1e-4].
    #[arg(long)]
    wd: Option<f64>,
    /// Batch size [preset: 128].
    #[arg(long)]
    batch: Option<usize>,
    /// LR schedule [preset: step].
    #[arg(long, value_parser = super::named::<Schedule>(super::SCHEDULES))]
    schedule: Option<Schedule>,
    /// Random seed for initialisation and shuffling [preset: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep w_0 and K evenly spaced samples per epoch as OUT/history.safetensors (0: none).
    #[arg(long, default_value_t = 0)]
    samples_per_epoch: usize,
    /// Epochs to sample, A..B (1-based, inclusive) [default: all].
    #[arg(long)]
    sample_epochs: Option<String>,
    /// Start from the weights (and BatchNorm statistics) of a saved model of the same
    /// architecture instead of a fresh initialisation: fine-tuning, e.g. the
    /// ingredients of a model soup.
    #[arg(long)]
    init: Option<PathBuf>,
    #[command(flatten)]
    run: RunFlags,
}

/// The run config: preset or file, then the flags.
fn resolve_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = base_config(&args.preset, args.config.as_deref(), &args.data)?;
    let t = &mut config.train;
    if let Some(v) = args.epochs {
        t.epochs = v;
    }
    if let Some(v) = args.lr {
        t.lr = v;
    }
    if let Some(v) = args.momentum {
        t.momentum = v;
    }
    if let Some(v) = args.wd {
        t.weight_decay = v;
    }
    if let Some(v) = args.batch {
        t.batch = v;
    }
    if let Some(v) = args.schedule {
        t.schedule = v;
    }
    if let Some(v) = args.seed {
        t.seed = v;
    }
    t.sync_bn |= args.run.sync_bn;
    config.train.validate()?;
    Ok(config)
}

pub fn train(job: &Job, adapter: Option<&str>, args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let config = resolve_config(&args)?;
    let out = output_dir(
        args.run.out.as_deref(),
        args.run.resume.as_deref(),
        "runs/train",
    )?;
    let sample_plan = match args.samples_per_epoch {
        0 => None,
        k => {
            let (first_epoch, last_epoch) = match &args.sample_epochs {
                Some(text) => SamplePlan::parse_epochs(text, config.train.epochs)?,
                None => (1, config.train.epochs),
            };
            Some(SamplePlan {
                per_epoch: k,
                first_epoch,
                last_epoch,
            })
        }
    };
    let sampling = sample_plan.as_ref().map_or("none".into(), |p| {
        format!(
            "{} per epoch, epochs {}..{}",
            p.per_epoch, p.first_epoch, p.last_epoch
        )
    });
    let init = args
        .init
        .as_ref()
        .map_or("none".into(), |p| p.display().to_string());
    let options = BTreeMap::from([
        ("sampling".to_string(), sampling),
        ("init".to_string(), init),
    ]);
    let _held = OutputDir::claim(&out)?;
    let checkpoints = Checkpoints::new(&out, "train", MODEL_FILE, &config, options);
    let saved = match checkpoints.begin(&*job.world, args.run.resume.is_some(), &out)? {
        Begin::Finished => return Ok(()),
        Begin::From(saved) => Some(*saved),
        Begin::Afresh => None,
    };
    let (data, val) = config.training_split(config.load_data()?)?;
    let gpu = job.gpu(adapter)?;
    describe_setup(&gpu, &data);
    if let Some(val) = &val {
        eprintln!(
            "validation: {} training samples held out (holdout seed {}), not trained on",
            val.train.count, config.data.holdout_seed
        );
    }
    let mut trainer = Trainer::new(&gpu, &data, &config.model, config.train.clone())?;
    trainer.distribute(&*job.world)?;
    trainer.stop = stop_on_ctrl_c();
    eprintln!(
        "model: {}, {} parameters",
        config.model.arch.name(),
        trainer.net.model.num_params()
    );
    if let Some(path) = &args.init {
        init_from(&gpu, &trainer, path)?;
    }
    if let Some(plan) = sample_plan {
        trainer.attach_sampler(plan)?;
    }
    let reporter = RefCell::new(Reporter::new(Some(out.join("metrics.jsonl"))));
    let mut first_epoch = 0;
    if let Some(saved) = &saved {
        saved.trainer.check_fits(&trainer)?;
        trainer.restore_state(&saved.trainer);
        reporter.borrow_mut().resume(saved.metrics.clone());
        first_epoch = saved.trainer.epoch;
        eprintln!(
            "resuming at epoch {}, step {}",
            first_epoch + 1,
            saved.trainer.step
        );
    }
    let result = block_on(train_with_checkpoints(
        &mut trainer,
        first_epoch..config.train.epochs,
        &Progress::default,
        &mut |e| reporter.borrow_mut().event(e),
        Some(&mut |t, p| checkpoints.save(t, p, &reporter)),
    ));
    let mut reporter = reporter.into_inner();
    reporter.finish();
    checkpoints.finish(result, &out)?;
    if let Some(e) = reporter.write_error.take() {
        return Err(e);
    }
    let mut memory = trainer.net.memory();
    memory.samples = trainer
        .sampler
        .as_ref()
        .map_or(0, |(_, store)| store.bytes());
    if let Some((_, store)) = trainer.sampler.take() {
        let history = History {
            table: trainer.net.model.params.clone(),
            samples: block_on(store.read(&gpu))?,
            infos: store.infos,
            config: config.clone(),
        };
        history.save(&out.join("history.safetensors"))?;
        eprintln!(
            "sampled {} solutions into {}",
            history.len(),
            out.join("history.safetensors").display()
        );
    }
    let params = block_on(trainer.net.read_params(&gpu))?;
    let state = block_on(trainer.net.read_state(&gpu))?;
    twa::run::model_file::save(
        &checkpoints.result,
        &trainer.net.model,
        &params,
        &state,
        twa::run::model_file::describe(&config, &data),
    )?;
    checkpoints.discard();
    let history: Vec<_> = reporter.history.iter().map(|(_, m)| m).collect();
    let last = history.last().expect("at least one epoch");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"
    );
    for m in &history {
        println!(
            "{:<6} {:>10.4} {:>9.2}% {:>10.4} {:>9.2}% {:>8.1}",
            m.epoch,
            m.train_loss,
            100.0 * m.train_acc,
            m.test_loss,
            100.0 * m.test_acc,
            m.seconds
        );
    }
    println!(
        "final test accuracy {:.2}% (loss {:.4}) after {} epochs, {seconds:.1}s; wrote {}",
        100.0 * last.test_acc,
        last.test_loss,
        history.len(),
        out.display()
    );
    if args.run.json {
        let summary = serde_json::json!({
            "test_acc": last.test_acc,
            "test_loss": last.test_loss,
            "train_loss": last.train_loss,
            "train_acc": last.train_acc,
            "epochs": history.len(),
            "seconds": seconds,
            "params": trainer.net.model.num_params(),
            "adapter": gpu.describe(),
            "out": out.display().to_string(),
            "ranks": job.world.size(),
            "bytes_per_rank": memory,
        });
        println!("{summary}");
    }
    Ok(())
}

/// Load a saved model's parameters into `trainer` (every tensor must match the
/// model; the error lists those that do not), and its BatchNorm running statistics
/// where the file has them all.
fn init_from(gpu: &Gpu, trainer: &Trainer, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let model = &trainer.net.model;
    let params = twa::run::model_file::load_table(path, &bytes, &model.params)?;
    trainer.net.set_params(gpu, &params);
    let state = match twa::run::model_file::load_table(path, &bytes, &model.state) {
        Ok(state) => {
            trainer.net.set_state(gpu, &state);
            "and BatchNorm statistics"
        }
        Err(_) if model.state.entries.is_empty() => "",
        Err(_) => "(BatchNorm statistics fresh: the file has not all of them)",
    };
    eprintln!("initialised from {} {state}", path.display());
    Ok(())
}
