//! The headless command line: `twa info`, `twa train`, `twa config`, `twa bench`.
//! It only sets up; the engine reports progress as events and errors as one line.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use twa::config::RunConfig;
use twa::data::Dataset;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::train::{EpochMetrics, Event, Schedule, Trainer};

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
    Train(TrainArgs),
    /// Print a preset (or the defaults) as TOML with every field written out.
    Config {
        /// Preset name (quick, fashion-mnist).
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

#[derive(Args)]
struct TrainArgs {
    /// Preset from assets/presets (quick: shipped subset, 8 epochs; fashion-mnist: full set, 20 epochs).
    #[arg(long, default_value = "quick", conflicts_with = "config")]
    preset: String,
    /// TOML config file (see `twa config` for every field); replaces the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// IDX data directory, e.g. /usr/share/datasets/fashion-mnist [default: the shipped subset].
    #[arg(long)]
    data: Option<PathBuf>,
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
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Random seed for initialisation and shuffling [preset: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Print a JSON summary as the last line of stdout.
    #[arg(long)]
    json: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Train(args) => train(cli.adapter.as_deref(), args),
        Command::Config { preset } => RunConfig::preset(&preset).map(|c| print!("{}", c.to_toml())),
        Command::Bench { quick } => {
            Gpu::new(cli.adapter.as_deref()).and_then(|gpu| twa::bench::run(&gpu, quick))
        }
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

fn resolve_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::preset(&args.preset)?,
    };
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
    if let Some(dir) = &args.data {
        config.data.dir = dir.display().to_string();
    }
    config.train.validate()?;
    Ok(config)
}

fn write_metrics(path: &std::path::Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m).expect("metrics serialise"));
        text.push('\n');
    }
    twa::files::write_atomic(path, text.as_bytes())
}

fn train(adapter: Option<&str>, args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let config = resolve_config(&args)?;
    twa::files::ensure_writable_dir(&args.out)?;
    let data = Dataset::load_idx_dir(&config.data_dir())?;
    let gpu = Gpu::new(adapter)?;
    eprintln!(
        "adapter: {}\ndata: {} ({} train, {} test, {} classes)",
        gpu.describe(),
        data.source.display(),
        data.train.count,
        data.test.count,
        data.classes
    );
    let mut trainer = Trainer::new(&gpu, &data, &config.model, config.train.clone())?;
    eprintln!(
        "model: MLP {:?}, {} parameters",
        config.model.hidden,
        trainer.net.model.num_params()
    );
    let metrics_path = args.out.join("metrics.jsonl");
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut bar: Option<ProgressBar> = None;
    let mut write_error = None;
    let epochs = config.train.epochs;
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let result = trainer.run(&mut |event| match event {
        Event::EpochStart { epoch, steps } => {
            let b = ProgressBar::new(steps as u64).with_style(style.clone()).with_prefix(format!("{epoch}/{epochs}"));
            bar = Some(b);
        }
        Event::Step { step } => {
            if let Some(b) = &bar {
                b.set_position(step as u64);
            }
        }
        Event::Running { loss, acc } => {
            if let Some(b) = &bar {
                b.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
            }
        }
        Event::Epoch(m) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            eprintln!(
                "epoch {:>3}/{epochs}  lr {:.4}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.1}s",
                m.epoch,
                m.lr,
                m.train_loss,
                100.0 * m.train_acc,
                m.test_loss,
                100.0 * m.test_acc,
                m.seconds
            );
            history.push(m);
            if let Err(e) = write_metrics(&metrics_path, &history) {
                write_error.get_or_insert(e);
            }
        }
    });
    if let Some(b) = bar.take() {
        b.abandon();
    }
    result?;
    if let Some(e) = write_error {
        return Err(e);
    }
    let params = trainer.net.read_params(&gpu)?;
    let state = trainer.net.read_state(&gpu)?;
    let mut meta = HashMap::new();
    meta.insert(
        "format".into(),
        "twa model: PyTorch nn.Sequential state_dict names".into(),
    );
    meta.insert("config".into(), config.to_toml());
    twa::checkpoint::save(
        &args.out.join("model.safetensors"),
        &trainer.net.model,
        &params,
        &state,
        meta,
    )?;
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
        args.out.display()
    );
    if args.json {
        let summary = serde_json::json!({
            "test_acc": last.test_acc,
            "test_loss": last.test_loss,
            "train_loss": last.train_loss,
            "train_acc": last.train_acc,
            "epochs": history.len(),
            "seconds": seconds,
            "params": trainer.net.model.num_params(),
            "adapter": gpu.describe(),
            "out": args.out.display().to_string(),
        });
        println!("{summary}");
    }
    Ok(())
}
