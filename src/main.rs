//! The headless command line: `twa info`, `twa train`, `twa run`, `twa average`,
//! `twa eval`, `twa history`, `twa landscape`, `twa plan`, `twa config`, `twa bench`. It only
//! parses and dispatches; the engine reports progress as events and errors as one line.

mod cli;
mod progress;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use twa::config::RunConfig;
use twa::error::{Error, Result};
use twa::twa::History;

#[derive(Parser)]
#[command(
    name = "twa",
    version,
    about = "Train networks with WGSL compute shaders on any GPU (wgpu); Trainable Weight Averaging"
)]
struct Cli {
    /// Adapter to use: an index from `twa info` or part of its name (default: the best one).
    /// The backend is chosen with WGPU_BACKEND=vulkan|gl|metal|dx12. Under mpirun, a
    /// comma-separated list gives one adapter per rank on a machine.
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
    Average(cli::average::AverageArgs),
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
    /// Memory per device and bytes exchanged per step for the presets and the paper's
    /// models, at R ranks and b-bit TWA directions, without running anything.
    Plan(cli::plan::PlanArgs),
    /// Print a preset (or the defaults) as TOML with every field written out.
    Config {
        /// Preset name (quick, fashion-mnist, head, tail, spirals, cnn, head-cnn, resnet).
        #[arg(long, default_value = "quick")]
        preset: String,
    },
    /// Benchmark the kernels on the current adapter and print a table.
    Bench {
        /// The long profile: more repetitions, the convolutions at the training batch
        /// (≈ 15 minutes on a software rasteriser; the default takes one or two).
        #[arg(long)]
        full: bool,
        /// Also print every figure as one JSON object, the last line of stdout.
        #[arg(long)]
        json: bool,
        /// What distribution costs instead (run it under `mpirun -np R` too): the sum
        /// across ranks in GB/s, and SGD and TWA steps with their share in the sums.
        #[arg(long)]
        collective: bool,
    },
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
    let job = match cli::job::Job::start() {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    };
    let adapter = parsed.adapter.as_deref();
    let result = match parsed.command {
        Command::Info => info(),
        Command::Train(args) => cli::train::train(&job, adapter, args),
        Command::Average(args) => cli::average::average(&job, adapter, args),
        Command::Run(args) => cli::run::run(&job, adapter, args),
        Command::Eval(args) => cli::eval::eval(adapter, args),
        Command::History { command } => cli::history::history(command),
        Command::Landscape(args) => landscape(&job, adapter, args),
        Command::Plan(args) => cli::plan::plan(args),
        Command::Config { preset } => RunConfig::preset(&preset).map(|c| print!("{}", c.to_toml())),
        Command::Bench {
            full,
            json,
            collective,
        } => job.gpu(adapter).and_then(|gpu| {
            if collective {
                twa::collective::bench::run(&gpu, &*job.world)
            } else {
                twa::bench::run(&gpu, full, json)
            }
        }),
    };
    if let Err(e) = result {
        job.fail(&e);
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

fn landscape(job: &cli::job::Job, adapter: Option<&str>, args: LandscapeArgs) -> Result<()> {
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
    let (config, data) = cli::history_data(&history, &args.history, args.data.as_deref())?;
    let twa_params = match &args.twa {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Some(twa::checkpoint::load_table(path, &bytes, &history.table)?)
        }
        None => None,
    };
    let gpu = job.gpu(adapter)?;
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
    let grid = land.evaluate(&spec, metric.part(), &*job.world, &mut |g| {
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
