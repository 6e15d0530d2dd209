//! The headless command line: `twa info`, `twa train`, `twa run`, `twa average`,
//! `twa eval`, `twa history`, `twa landscape`, `twa config`, `twa bench`. It only
//! parses and dispatches; the engine reports progress as events and errors as one line.

mod cli;
mod progress;

use clap::{Args, Parser, Subcommand};
use progress::Reporter;
use std::path::{Path, PathBuf};
use std::time::Instant;
use twa::config::RunConfig;
use twa::data::Dataset;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::train::{Schedule, Trainer};
use twa::twa::average::{self, Optimizer, Start, TwaConfig};
use twa::twa::directions::Coefficients;
use twa::twa::History;

#[derive(Parser)]
#[command(
    name = "twa",
    version,
    about = "Train networks with WGSL compute shaders on any GPU (wgpu); Trainable Weight Averaging"
)]
struct Cli {
    /// Adapter to use: an index from `twa info` or part of its name (default: the best one).
    /// The backend is chosen with WGPU_BACKEND=vulkan|gl|metal|dx12.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with backend, driver and the limits that matter.
    Info,
    /// Train a model; writes OUT/metrics.jsonl and OUT/model.safetensors.
    Train(cli::train::TrainArgs),
    /// Average a sampled history: SWA, EMA and/or TWA, each with BatchNorm re-estimated.
    Average(AverageArgs),
    /// One-command pipeline: SGD with sampling, then SWA vs TWA (presets head, tail).
    Run(cli::run::RunArgs),
    /// Evaluate a saved model: accuracy, per-class accuracy, confusion matrix.
    Eval(cli::eval::EvalArgs),
    /// Work with sampled histories (import a trajectory saved by PyTorch).
    History {
        #[command(subcommand)]
        command: cli::history::HistoryCommand,
    },
    /// Loss over a plane of a history's coefficient space: OUT/landscape.csv and .png.
    Landscape(LandscapeArgs),
    /// Print a preset (or the defaults) as TOML with every field written out.
    Config {
        /// Preset name (quick, fashion-mnist, head, tail, spirals, cnn, head-cnn, resnet).
        #[arg(long, default_value = "quick")]
        preset: String,
    },
    /// Benchmark the kernels on the current adapter and print a table.
    Bench {
        /// Fewer repetitions (a smoke run).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Method {
    Swa,
    Ema,
    Twa,
    All,
}

#[derive(Args)]
struct AverageArgs {
    /// A history written by `twa train --samples-per-epoch K` or `twa run`.
    #[arg(long)]
    history: PathBuf,
    /// Averaging method.
    #[arg(long, value_enum, default_value = "all")]
    method: Method,
    /// Samples to use, I..J (0-based, inclusive) [default: all].
    #[arg(long)]
    range: Option<String>,
    /// Where TWA starts: swa (the mean), last, or a sample index within the range.
    #[arg(long, default_value = "swa")]
    start: String,
    /// TWA epochs.
    #[arg(long, default_value_t = 2)]
    twa_epochs: usize,
    /// TWA learning rate (large on purpose: the gradient is projected onto a tiny subspace).
    #[arg(long, default_value_t = 2.0)]
    twa_lr: f64,
    /// TWA weight decay.
    #[arg(long, default_value_t = 1e-5)]
    twa_wd: f64,
    /// TWA LR schedule.
    #[arg(long, value_enum, default_value = "step")]
    twa_schedule: Schedule,
    /// TWA's parametrisation: projected SGD in the orthonormal basis, or explicit
    /// coefficients per direction (global) or per direction and layer (layer).
    #[arg(long, value_enum, default_value = "orthonormal")]
    coefficients: Coefficients,
    /// Bits per stored direction value, 1, 2, 4, 8 or 32 (explicit coefficients).
    #[arg(long, default_value_t = 32)]
    bits: u32,
    /// Optimiser of the coefficients (adamw: explicit coefficients only).
    #[arg(long, value_enum, default_value = "sgd")]
    twa_optimizer: Optimizer,
    /// TWA momentum (AdamW's β₁).
    #[arg(long, default_value_t = 0.9)]
    twa_momentum: f64,
    /// EMA decay per sample.
    #[arg(long, default_value_t = 0.9)]
    ema_decay: f64,
    /// IDX data directory [default: the one the history was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "runs/average")]
    out: PathBuf,
    /// Print the results as one JSON object, the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LandscapeArgs {
    /// A history written by `twa train --samples-per-epoch K` or `twa run`.
    #[arg(long)]
    history: PathBuf,
    /// TWA weights (e.g. OUT/twa.safetensors of `twa run` or `twa average`).
    #[arg(long)]
    twa: Option<PathBuf>,
    /// The plane: swa-twa-last (needs --twa) or pca [default: swa-twa-last with
    /// --twa, else pca].
    #[arg(long)]
    plane: Option<String>,
    /// Grid points per side (the coarse levels come first).
    #[arg(long, default_value_t = 33)]
    grid: usize,
    /// What to show: train-loss, test-loss or test-error (on a fixed batch).
    #[arg(long, default_value = "test-loss")]
    metric: String,
    /// Samples in the fixed evaluation batch (BatchNorm uses its statistics).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Width of the PNG's heatmap in pixels.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// IDX data directory [default: the one the history was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "runs/landscape")]
    out: PathBuf,
    /// Print a summary as one JSON object, the last line of stdout.
    #[arg(long)]
    json: bool,
}

fn main() {
    let parsed = Cli::parse();
    let adapter = parsed.adapter.as_deref();
    let result = match parsed.command {
        Command::Info => info(),
        Command::Train(args) => cli::train::train(adapter, args),
        Command::Average(args) => average_history(adapter, args),
        Command::Run(args) => cli::run::run(adapter, args),
        Command::Eval(args) => cli::eval::eval(adapter, args),
        Command::History { command } => cli::history::history(command),
        Command::Landscape(args) => landscape(adapter, args),
        Command::Config { preset } => RunConfig::preset(&preset).map(|c| print!("{}", c.to_toml())),
        Command::Bench { quick } => Gpu::new(adapter).and_then(|gpu| twa::bench::run(&gpu, quick)),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn info() -> Result<()> {
    let adapters = twa::gpu::context::list_adapters();
    if adapters.is_empty() {
        return Err(Error::NoAdapter(String::new()));
    }
    for (i, a) in adapters.iter().enumerate() {
        let l = a.limits();
        println!("[{i}] {}", twa::gpu::context::describe(&a.get_info()));
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup memory {} KiB, invocations/workgroup {}, storage buffers/stage {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffers_per_shader_stage
        );
        println!(
            "    timestamp queries: {}",
            a.features().contains(wgpu::Features::TIMESTAMP_QUERY)
        );
    }
    Ok(())
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

/// The run config a history was made with (its data directory replaced by `data`),
/// the data loaded, and a check that the history's parameters fit that model.
fn history_data(
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

fn average_history(adapter: Option<&str>, args: AverageArgs) -> Result<()> {
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
    let (config, data) = history_data(&history, &args.history, args.data.as_deref())?;
    let gpu = Gpu::new(adapter)?;
    cli::describe_setup(&gpu, &data);
    let dim = history.dim();
    let samples = &history.samples[first * dim..(last + 1) * dim];
    eprintln!(
        "samples {first}..{last} of {} ({count} used)",
        history.len()
    );
    let mut trainer = Trainer::new(
        &gpu,
        &data,
        &config.model,
        average::twa_train_config(&config.train, &twa_config),
    )?;
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
        let run = average::train_twa(&gpu, &mut trainer, samples, &twa_config, &mut |e| {
            reporter.event(e)
        });
        reporter.finish();
        let run = run?;
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
    for r in results.iter().filter(|r| r.method == "twa") {
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
    let json = serde_json::json!({ "samples": [first, last], "results": results });
    twa::files::write_atomic(&args.out.join("average.json"), json.to_string().as_bytes())?;
    if args.json {
        println!("{json}");
    }
    Ok(())
}

fn landscape(adapter: Option<&str>, args: LandscapeArgs) -> Result<()> {
    use twa::landscape::{self, Landscape, Metric, Plane, PlaneKind};
    let metric: Metric = args.metric.parse().map_err(Error::Config)?;
    let kind: PlaneKind = match &args.plane {
        Some(p) => p.parse().map_err(Error::Config)?,
        None if args.twa.is_some() => PlaneKind::SwaTwaLast,
        None => PlaneKind::Pca,
    };
    if !(2..=257).contains(&args.grid) || args.batch == 0 || !(64..=4096).contains(&args.size) {
        return Err(Error::Config(
            "--grid must be in 2..=257, --batch at least 1, --size in 64..=4096".into(),
        ));
    }
    let history = History::load(&args.history)?;
    if history.len() < 2 {
        return Err(Error::Config(format!(
            "a landscape needs at least 2 samples, the history has {}",
            history.len()
        )));
    }
    twa::files::ensure_writable_dir(&args.out)?;
    let (config, data) = history_data(&history, &args.history, args.data.as_deref())?;
    let twa_params = match &args.twa {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Some(twa::checkpoint::load_table(path, &bytes, &history.table)?)
        }
        None => None,
    };
    let gpu = Gpu::new(adapter)?;
    cli::describe_setup(&gpu, &data);
    let started = Instant::now();
    let mut land = Landscape::new(
        &gpu,
        &data,
        &config.model,
        &history.samples,
        args.batch,
        config.train.seed,
    )?;
    let twa_point = twa_params.map(|p| land.coordinates_of(&p)).transpose()?;
    let anchors = land.anchors(twa_point);
    let plane = Plane::build(kind, &anchors)?;
    land.set_plane(&plane)?;
    let subspace_seconds = started.elapsed().as_secs_f64();
    let overlay = landscape::overlay(&plane, &anchors);
    let spec = landscape::grid_around(&overlay, args.grid);
    let bar = indicatif::ProgressBar::new((args.grid * args.grid) as u64);
    let grid_started = Instant::now();
    let mut levels = Vec::new();
    let grid = land.evaluate(&spec, metric.part(), &mut |g| {
        let done = g.loss.iter().filter(|v| !v.is_nan()).count();
        bar.set_position(done as u64);
        if levels
            .last()
            .is_none_or(|&(stride, _, _)| stride != g.stride)
            && g.stride != usize::MAX
        {
            levels.push((g.stride, done, grid_started.elapsed().as_secs_f64()));
        }
        true
    })?;
    bar.finish_and_clear();
    let grid_seconds = started.elapsed().as_secs_f64() - subspace_seconds;
    let csv = args.out.join("landscape.csv");
    let png = args.out.join("landscape.png");
    twa::files::write_atomic(&csv, grid.to_csv().as_bytes())?;
    let picture = landscape::render::render_png(&grid, metric, &overlay, args.size);
    twa::files::write_atomic(&png, &picture)?;
    let at = |p: Option<[f64; 2]>| p.map(|[x, y]| serde_json::json!({ "x": x, "y": y }));
    let summary = serde_json::json!({
        "plane": kind.name(),
        "metric": metric.label(),
        "grid": args.grid,
        "batch": args.batch,
        "x": [spec.x.0, spec.x.1],
        "y": [spec.y.0, spec.y.1],
        "samples": overlay.samples,
        "swa": at(overlay.swa),
        "twa": at(overlay.twa),
        "rank": land.space.rank,
        "subspace_seconds": subspace_seconds,
        "grid_seconds": grid_seconds,
        "levels": levels
            .iter()
            .map(|(_, points, seconds)| serde_json::json!({ "points": points, "seconds": seconds }))
            .collect::<Vec<_>>(),
        "csv": csv,
        "png": png,
    });
    twa::files::write_atomic(
        &args.out.join("landscape.json"),
        summary.to_string().as_bytes(),
    )?;
    let values = grid.values(metric);
    let best = values.iter().copied().fold(f32::INFINITY, f32::min);
    eprintln!(
        "{} on the {} plane: {}² points in {grid_seconds:.1} s (subspace of rank {} in {subspace_seconds:.1} s); lowest {best:.4}",
        metric.label(),
        kind.name(),
        args.grid,
        land.space.rank,
    );
    eprintln!("wrote {} and {}", csv.display(), png.display());
    if args.json {
        println!("{summary}");
    }
    Ok(())
}
