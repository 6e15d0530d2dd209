//! `twa average`: SWA, EMA and TWA over a sampled history, each with BatchNorm
//! re-estimated, side by side.

use crate::progress::Reporter;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::train::{Schedule, Trainer};
use twa::twa::average::{self, Optimizer, Start, TwaConfig};
use twa::twa::directions::Coefficients;
use twa::twa::History;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Swa,
    Ema,
    Twa,
    All,
}

#[derive(Args)]
pub struct AverageArgs {
    /// A history written by `twa train --samples-per-epoch K` or `twa run`.
    #[arg(long)]
    pub history: PathBuf,
    /// Averaging method.
    #[arg(long, value_enum, default_value = "all")]
    pub method: Method,
    /// Samples to use, I..J (0-based, inclusive) [default: all].
    #[arg(long)]
    pub range: Option<String>,
    /// Where TWA starts: swa (the mean), last, or a sample index within the range.
    #[arg(long, default_value = "swa")]
    pub start: String,
    /// TWA epochs.
    #[arg(long, default_value_t = 2)]
    pub twa_epochs: usize,
    /// TWA learning rate (large on purpose: the gradient is projected onto a tiny subspace).
    #[arg(long, default_value_t = 2.0)]
    pub twa_lr: f64,
    /// TWA weight decay.
    #[arg(long, default_value_t = 1e-5)]
    pub twa_wd: f64,
    /// TWA LR schedule.
    #[arg(long, value_enum, default_value = "step")]
    pub twa_schedule: Schedule,
    /// TWA's parametrisation: projected SGD in the orthonormal basis, or explicit
    /// coefficients per direction (global) or per direction and layer (layer).
    #[arg(long, value_enum, default_value = "orthonormal")]
    pub coefficients: Coefficients,
    /// Bits per stored direction value, 1, 2, 4, 8 or 32 (explicit coefficients).
    #[arg(long, default_value_t = 32)]
    pub bits: u32,
    /// Optimiser of the coefficients (adamw: explicit coefficients only).
    #[arg(long, value_enum, default_value = "sgd")]
    pub twa_optimizer: Optimizer,
    /// TWA momentum (AdamW's β₁).
    #[arg(long, default_value_t = 0.9)]
    pub twa_momentum: f64,
    /// EMA decay per sample.
    #[arg(long, default_value_t = 0.9)]
    pub ema_decay: f64,
    /// IDX data directory [default: the one the history was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// TWA-v: hold out N training samples (seeded by the history's seed, stratified
    /// by class) and train TWA's coefficients on them; BatchNorm is re-estimated on
    /// the other training samples for every method. (The history's SGD run saw them
    /// unless it was trained without them.)
    #[arg(long)]
    pub val: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "runs/average")]
    pub out: PathBuf,
    /// Print the results as one JSON object, the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parse `I..J` (0-based, inclusive) over `n` samples.
fn parse_range(text: &str, n: usize) -> Result<(usize, usize)> {
    let bad = |why: &str| {
        Error::Config(format!(
            "--range `{text}`: {why} (the history has samples 0..{})",
            n.saturating_sub(1)
        ))
    };
    let (a, b) = text.split_once("..").ok_or_else(|| bad("expected I..J"))?;
    let a: usize = a.trim().parse().map_err(|_| bad("expected I..J"))?;
    let b: usize = b.trim().parse().map_err(|_| bad("expected I..J"))?;
    if a > b {
        return Err(bad("the range is reversed"));
    }
    if b >= n {
        return Err(bad("the range ends past the last sample"));
    }
    Ok((a, b))
}

pub fn average(adapter: Option<&str>, args: AverageArgs) -> Result<()> {
    let history = History::load(&args.history)?;
    let n = history.len();
    let (first, last) = match &args.range {
        Some(text) => parse_range(text, n)?,
        None => (0, n.saturating_sub(1)),
    };
    let count = if n == 0 { 0 } else { last + 1 - first };
    if count < 2 {
        return Err(Error::Config(format!(
            "averaging needs at least 2 samples, the selection has {count}"
        )));
    }
    let start: Start = args.start.parse().map_err(Error::Config)?;
    let twa_config = TwaConfig {
        epochs: args.twa_epochs,
        lr: args.twa_lr,
        weight_decay: args.twa_wd,
        momentum: args.twa_momentum,
        schedule: args.twa_schedule,
        start,
        coefficients: args.coefficients,
        bits: args.bits,
        optimizer: args.twa_optimizer,
    };
    twa_config.validate()?;
    if !(0.0..1.0).contains(&args.ema_decay) {
        return Err(Error::Config(format!(
            "--ema-decay must be in [0, 1), got {}",
            args.ema_decay
        )));
    }
    twa::files::ensure_writable_dir(&args.out)?;
    let (config, data) = super::history_data(&history, &args.history, args.data.as_deref())?;
    let gpu = Gpu::new(adapter)?;
    super::describe_setup(&gpu, &data);
    let dim = history.dim();
    let samples = &history.samples[first * dim..(last + 1) * dim];
    eprintln!(
        "samples {first}..{last} of {} ({count} used)",
        history.len()
    );
    let twa_train = average::twa_train_config(&config.train, &twa_config);
    // TWA-v: the coefficients train on held-out samples, BatchNorm is re-estimated
    // on the rest (for every method, so that the rows compare).
    let split = args
        .val
        .map(|n| twa::data::holdout::hold_out(&data, n, config.train.seed))
        .transpose()?;
    let (bn_data, twa_data) = match &split {
        Some((rest, val)) => {
            eprintln!(
                "TWA-v: {} training samples held out (seed {}); TWA's coefficients train on \
                 them, BatchNorm is re-estimated on the other {}",
                val.train.count, config.train.seed, rest.train.count
            );
            (rest, Some(val))
        }
        None => (&data, None),
    };
    let mut trainer = Trainer::new(&gpu, bn_data, &config.model, twa_train.clone())?;
    let mut results: Vec<average::Averaged> = Vec::new();
    let point = |name: &str,
                 params: Vec<f32>,
                 alpha: Vec<f64>,
                 trainer: &mut Trainer|
     -> Result<average::Averaged> {
        let started = Instant::now();
        let totals = average::evaluate_at(trainer, &params)?;
        let state = trainer.net.read_state(&gpu)?;
        Ok(average::Averaged {
            method: name.into(),
            test_acc: totals.accuracy(),
            test_loss: totals.mean_loss(),
            seconds: started.elapsed().as_secs_f64(),
            alpha,
            params,
            state,
            ..Default::default()
        })
    };
    if matches!(args.method, Method::Swa | Method::All) {
        results.push(point(
            "swa",
            average::mean(samples, dim),
            vec![1.0 / count as f64; count],
            &mut trainer,
        )?);
    }
    if matches!(args.method, Method::Ema | Method::All) {
        let (params, weights) = average::ema(samples, dim, args.ema_decay);
        results.push(point("ema", params, weights, &mut trainer)?);
    }
    if matches!(args.method, Method::Twa | Method::All) {
        let mut reporter = Reporter::new(Some(args.out.join("metrics.jsonl")));
        reporter.event(twa::train::Event::Phase(format!(
            "TWA, {} epochs at lr {}",
            twa_config.epochs, twa_config.lr
        )));
        let mut val_trainer = twa_data
            .map(|val| Trainer::new(&gpu, val, &config.model, twa_train.clone()))
            .transpose()?;
        let twa_trainer = val_trainer.as_mut().unwrap_or(&mut trainer);
        let run = average::train_twa(&gpu, twa_trainer, samples, &twa_config, &mut |e| {
            reporter.event(e)
        });
        reporter.finish();
        let mut run = run?;
        if val_trainer.is_some() {
            average::re_evaluate(&mut trainer, &mut run.outcome)?;
            run.outcome.method = "twa-v".into();
        }
        if !run.dropped.is_empty() {
            eprintln!(
                "note: {} near-duplicate samples left out of the subspace (rank {}): {:?}",
                run.dropped.len(),
                run.rank,
                run.dropped
            );
        }
        results.push(run.outcome);
    }
    for r in &results {
        twa::checkpoint::save(
            &args.out.join(format!("{}.safetensors", r.method)),
            &trainer.net.model,
            &r.params,
            &r.state,
            twa::checkpoint::describe(&config, &data),
        )?;
    }
    println!(
        "{:<8} {:>10} {:>10} {:>9}",
        "method", "test_acc", "test_loss", "seconds"
    );
    for r in &results {
        println!(
            "{:<8} {:>9.2}% {:>10.4} {:>9.1}",
            r.method,
            100.0 * r.test_acc,
            r.test_loss,
            r.seconds
        );
    }
    for r in results.iter().filter(|r| r.method.starts_with("twa")) {
        if let Some(bytes) = r.subspace_bytes {
            println!(
                "TWA subspace on the device: {:.2} MiB ({:?} coefficients, {}-bit)",
                bytes as f64 / (1 << 20) as f64,
                twa_config.coefficients,
                twa_config.bits
            );
        }
        let shown: Vec<String> = r.alpha.iter().map(|a| format!("{a:.3}")).collect();
        println!(
            "TWA coefficients α over samples {first}..{last} (SWA: {:.3} each): [{}]",
            1.0 / count as f64,
            shown.join(", ")
        );
    }
    let splits = match &split {
        Some((rest, val)) => serde_json::json!({
            "twa_coefficients": format!("validation: {} held-out training samples", val.train.count),
            "batchnorm": format!("the other {} training samples", rest.train.count),
            "test": "reported only",
        }),
        None => serde_json::json!({
            "twa_coefficients": "training split",
            "batchnorm": "training split",
            "test": "reported only",
        }),
    };
    if let Some((_, val)) = &split {
        println!(
            "splits: TWA-v's coefficients trained on {} held-out training samples, BatchNorm \
             on the rest; the test split is only reported",
            val.train.count
        );
    }
    let json =
        serde_json::json!({ "samples": [first, last], "splits": splits, "results": results });
    twa::files::write_atomic(&args.out.join("average.json"), json.to_string().as_bytes())?;
    if args.json {
        println!("{json}");
    }
    Ok(())
}
