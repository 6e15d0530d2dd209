//! `twa average`: SWA (the uniform soup), EMA, the greedy soup and TWA over sampled
//! histories and saved models of one model, each with BatchNorm re-estimated, side
//! by side.

use crate::progress::Reporter;
use clap::Args;
use pollster::block_on;
use std::path::PathBuf;
use std::time::Instant;
use twa::data::Dataset;
use twa::error::{Error, Result};
use twa::nn::Optimizer;
use twa::nn::ParamTable;
use twa::run::config::RunConfig;
use twa::run::History;
use twa::train::{Schedule, Trainer};
use twa::twa::average;
use twa::twa::config::{Start, TwaConfig};
use twa::twa::directions::Coefficients;
use twa::twa::Samples;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// The mean (over model files: the uniform soup).
    Swa,
    Ema,
    /// The greedy soup (needs --val).
    Greedy,
    Twa,
    /// SWA, EMA, TWA, and the greedy soup when --val is given.
    All,
}

#[derive(Args)]
pub struct AverageArgs {
    /// A history written by `twa train --samples-per-epoch K` or `twa run` (may be
    /// given several times: their samples are concatenated).
    #[arg(long)]
    pub history: Vec<PathBuf>,
    /// A model file of the same model (e.g. `twa train --init` fine-tunes), one
    /// sample each; may be given several times, after the histories' samples.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Averaging method.
    #[arg(long, value_enum, default_value = "all")]
    pub method: Method,
    /// Samples of the one history to use, I..J (0-based, inclusive) [default: all].
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
    #[arg(long, value_parser = super::named::<Schedule>(super::SCHEDULES), default_value = "step")]
    pub twa_schedule: Schedule,
    /// TWA's parametrisation: projected SGD in the orthonormal basis, or explicit
    /// coefficients per direction (global) or per direction and layer (layer).
    #[arg(long, value_parser = super::named::<Coefficients>(super::COEFFICIENTS), default_value = "orthonormal")]
    pub coefficients: Coefficients,
    /// Bits per stored direction value, 1, 2, 4, 8 or 32 (explicit coefficients).
    #[arg(long, default_value_t = 32)]
    pub bits: u32,
    /// Optimiser of the coefficients (adamw: explicit coefficients only).
    #[arg(long, value_parser = super::named::<Optimizer>(super::OPTIMIZERS), default_value = "sgd")]
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
    /// TWA-v: hold out N training samples (stratified by class; `[data] holdout_seed`;
    /// default: the runs' own `--val`; 0: none) and train TWA's coefficients on them; the greedy soup ranks and picks
    /// by accuracy on them; BatchNorm is re-estimated on the other training samples
    /// for every method. (The SGD runs saw them unless they were trained without them.)
    #[arg(long)]
    pub val: Option<usize>,
    /// Under mpirun: BatchNorm statistics over the whole global batch (summed across
    /// the ranks at every BatchNorm), so that R ranks train exactly as one process;
    /// without it each rank normalises with its own share (as PyTorch's DDP).
    #[arg(long)]
    pub sync_bn: bool,
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

/// What is averaged: samples from histories and model files of one model, the run
/// config of the first and its data.
struct Inputs {
    config: RunConfig,
    data: Dataset,
    samples: Vec<f32>,
    dim: usize,
    /// Where the samples come from, for the report.
    describe: String,
    from_models: bool,
}

/// The samples of `args`' histories (the one history's `--range`) and model files,
/// checked to belong to one model.
fn load_inputs(args: &AverageArgs) -> Result<Inputs> {
    if args.history.is_empty() && args.model.is_empty() {
        return Err(Error::Config(
            "nothing to average: give --history FILE or --model FILE (each may repeat)".into(),
        ));
    }
    if args.range.is_some() && (args.history.len() != 1 || !args.model.is_empty()) {
        return Err(Error::Config(
            "--range selects samples of one history; it cannot apply to several inputs".into(),
        ));
    }
    let histories = args
        .history
        .iter()
        .map(|p| History::load(p))
        .collect::<Result<Vec<_>>>()?;
    let (config, data, table): (RunConfig, Dataset, ParamTable) = match histories.first() {
        Some(h) => {
            let (config, data) = super::history_data(h, &args.history[0], args.data.as_deref())?;
            (config, data, h.table.clone())
        }
        None => {
            let path = &args.model[0];
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let mut config = twa::run::model_file::ModelInfo::read(path, &bytes)?.config;
            if let Some(dir) = &args.data {
                config.set_data_dir(dir);
            }
            let data = config.load_data()?;
            let model = twa::nn::Model::build(&config.model, data.train.shape, data.classes)?;
            (config, data, model.params)
        }
    };
    let dim = table.len;
    let mut samples = Vec::new();
    let mut describe = Vec::new();
    for (h, path) in histories.iter().zip(&args.history) {
        if h.table != table {
            return Err(Error::format(
                path,
                format!(
                    "its parameter table (D = {}) is not that of {} (D = {dim})",
                    h.dim(),
                    args.history[0].display()
                ),
            ));
        }
        let (first, last) = match &args.range {
            Some(text) => parse_range(text, h.len())?,
            None => (0, h.len().saturating_sub(1)),
        };
        if !h.is_empty() {
            samples.extend_from_slice(&h.samples[first * dim..(last + 1) * dim]);
        }
        describe.push(format!(
            "samples {first}..{last} of {} ({})",
            h.len(),
            path.display()
        ));
    }
    for path in &args.model {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        samples.extend(twa::run::model_file::load_table(path, &bytes, &table)?);
    }
    if !args.model.is_empty() {
        describe.push(format!("{} model files", args.model.len()));
    }
    let count = samples.len() / dim;
    if count < 2 {
        return Err(Error::Config(format!(
            "averaging needs at least 2 samples, the selection has {count}"
        )));
    }
    Ok(Inputs {
        config,
        data,
        samples,
        dim,
        describe: format!("{count} samples: {}", describe.join(", ")),
        from_models: !args.model.is_empty(),
    })
}

pub fn average(job: &super::job::Job, adapter: Option<&str>, args: AverageArgs) -> Result<()> {
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
    let Inputs {
        config,
        data,
        samples,
        dim,
        describe,
        from_models,
    } = load_inputs(&args)?;
    // The split the run held out (`twa train|run --val N`), unless --val says
    // otherwise; --val 0 trains TWA on the training part without TWA-v.
    let holdout = config.data.holdout;
    let held = args
        .val
        .filter(|&n| n > 0)
        .or((holdout > 0).then_some(holdout));
    let twa_v = held.is_some() && args.val != Some(0);
    match (args.val, holdout) {
        (Some(n), 0) if n > 0 => eprintln!(
            "note: the averaged runs trained on these {n} samples too \
             (`twa train|run --val {n}` keeps them out)"
        ),
        (Some(n), h) if n > 0 && h > 0 && n != h => eprintln!(
            "note: the run held out {h} samples; --val {n} draws another split, \
             partly trained on"
        ),
        _ => {}
    }
    if args.method == Method::Greedy && held.is_none() {
        return Err(Error::Config(
            "the greedy soup ranks and picks by validation accuracy: give --val N \
             (the test split is never used for a choice)"
                .into(),
        ));
    }
    let samples = &samples[..];
    let count = samples.len() / dim;
    let _out = twa::outdir::OutputDir::claim(&args.out)?;
    let gpu = job.gpu(adapter)?;
    let world = &*job.world;
    super::describe_setup(&gpu, &data);
    eprintln!("{describe}");
    let mut twa_train = twa::twa::config::twa_train_config(&config.train, &twa_config);
    twa_train.sync_bn |= args.sync_bn;
    // The held-out samples are never trained on: BatchNorm is re-estimated on the rest
    // (for every method, so that the rows compare); TWA-v trains its coefficients on
    // them, the greedy soup picks by them.
    let split = held
        .map(|n| twa::data::holdout::hold_out(&data, n, config.data.holdout_seed))
        .transpose()?;
    let (bn_data, twa_data) = match &split {
        Some((rest, val)) => {
            eprintln!(
                "validation: {} training samples held out (holdout seed {}); BatchNorm is \
                 re-estimated on the other {}{}",
                val.train.count,
                config.data.holdout_seed,
                rest.train.count,
                if twa_v {
                    "; TWA-v's coefficients train on the held-out ones"
                } else {
                    ""
                }
            );
            (rest, twa_v.then_some(val))
        }
        None => (&data, None),
    };
    let mut trainer = Trainer::new(&gpu, bn_data, &config.model, twa_train.clone())?;
    trainer.distribute(world)?;
    let mut results: Vec<twa::twa::outcome::Averaged> = Vec::new();
    // An average given by its weights: BatchNorm re-estimated, evaluated.
    let point = |name: &str,
                 params: Vec<f32>,
                 alpha: Vec<f64>,
                 trainer: &mut Trainer|
     -> Result<twa::twa::outcome::Averaged> {
        let started = Instant::now();
        let mut averaged = twa::twa::outcome::Averaged {
            method: name.into(),
            alpha,
            params,
            ..Default::default()
        };
        block_on(average::re_evaluate(trainer, &mut averaged))?;
        averaged.seconds = started.elapsed().as_secs_f64();
        Ok(averaged)
    };
    if matches!(args.method, Method::Swa | Method::All) {
        results.push(point(
            if from_models { "uniform-soup" } else { "swa" },
            twa::twa::mean::mean(samples, dim),
            vec![1.0 / count as f64; count],
            &mut trainer,
        )?);
    }
    if matches!(args.method, Method::Ema | Method::All) {
        let (params, weights) = twa::twa::mean::ema(samples, dim, args.ema_decay);
        results.push(point("ema", params, weights, &mut trainer)?);
    }
    let mut greedy_log = None;
    if let (Some((rest, val)), Method::Greedy | Method::All) = (&split, args.method) {
        // Ranked and picked on the held-out samples, BatchNorm from the rest.
        let on_validation = Dataset {
            test: val.train.clone(),
            ..rest.clone()
        };
        let mut validator = Trainer::new(&gpu, &on_validation, &config.model, twa_train.clone())?;
        validator.distribute(world)?;
        let started = Instant::now();
        let (params, alpha, log) =
            block_on(twa::twa::soup::greedy_soup(&mut validator, samples, dim))?;
        drop(validator);
        let mut soup = point("greedy-soup", params, alpha, &mut trainer)?;
        soup.seconds += started.elapsed().as_secs_f64();
        let kept = log.iter().filter(|i| i.kept).count();
        eprintln!("greedy soup: {kept} of {count} ingredients kept");
        results.push(soup);
        greedy_log = Some(log);
    }
    if matches!(args.method, Method::Twa | Method::All) {
        let mut reporter = Reporter::new(Some(args.out.join("metrics.jsonl")));
        reporter.event(twa::train::Event::Phase(format!(
            "TWA, {} epochs at lr {}",
            twa_config.epochs, twa_config.lr
        )));
        let mut val_trainer = twa_data
            .map(|val| {
                let mut t = Trainer::new(&gpu, val, &config.model, twa_train.clone())?;
                t.distribute(world)?;
                Ok::<_, Error>(t)
            })
            .transpose()?;
        let twa_trainer = val_trainer.as_mut().unwrap_or(&mut trainer);
        let run = block_on(average::train_twa(
            &gpu,
            twa_trainer,
            Samples::host(samples),
            &twa_config,
            &mut |e| reporter.event(e),
        ));
        reporter.finish();
        let mut run = run?;
        if val_trainer.is_some() {
            block_on(average::re_evaluate(&mut trainer, &mut run.outcome))?;
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
        twa::run::model_file::save(
            &args.out.join(format!("{}.safetensors", r.method)),
            &trainer.net.model,
            &r.params,
            &r.state,
            twa::run::model_file::describe(&config, &data),
        )?;
    }
    println!(
        "{:<13} {:>10} {:>10} {:>9}",
        "method", "test_acc", "test_loss", "seconds"
    );
    for r in &results {
        println!(
            "{:<13} {:>9.2}% {:>10.4} {:>9.1}",
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
            "TWA coefficients α over the {count} samples (SWA: {:.3} each): [{}]",
            1.0 / count as f64,
            shown.join(", ")
        );
    }
    let splits = match &split {
        Some((rest, val)) => serde_json::json!({
            "twa_coefficients": match twa_v {
                true => format!("validation: {} held-out training samples", val.train.count),
                false => format!("training: the {} samples not held out", rest.train.count),
            },
            "greedy_soup": "ranked and picked by validation accuracy",
            "batchnorm": format!("the other {} training samples", rest.train.count),
            "test": "reported only",
        }),
        None => serde_json::json!({
            "twa_coefficients": "training split",
            "batchnorm": "training split",
            "test": "reported only",
        }),
    };
    if let Some((rest, val)) = &split {
        println!(
            "splits: {} training samples held out; TWA's coefficients trained on {}, \
             BatchNorm on the other {}; the test split is only reported",
            val.train.count,
            if twa_v { "them (TWA-v)" } else { "the others" },
            rest.train.count
        );
    }
    let json = serde_json::json!({
        "samples": describe,
        "splits": splits,
        "results": results,
        "greedy_soup": greedy_log,
    });
    twa::files::write_atomic(&args.out.join("average.json"), json.to_string().as_bytes())?;
    if args.json {
        println!("{json}");
    }
    Ok(())
}
