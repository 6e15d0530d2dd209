//! The headless command line: `twa info`, `twa train`, `twa run`, `twa average`,
//! `twa eval`, `twa history`, `twa landscape`, `twa plan`, `twa config`, `twa bench`. It only
//! parses and dispatches; the engine reports progress as events and errors as one line.

mod cli;
mod progress;

use clap::{Parser, Subcommand};
use twa::error::{Error, Result};
use twa::run::config::RunConfig;

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
    Landscape(cli::landscape::LandscapeArgs),
    /// Memory per device and bytes exchanged per step for the presets and the paper's
    /// models, at R ranks and b-bit TWA directions, without running anything.
    Plan(cli::plan::PlanArgs),
    /// Print a preset (or the defaults) as TOML with every field written out.
    Config {
        /// Preset name (quick, fashion-mnist, head, tail, spirals, cnn, head-cnn, resnet,
        /// lenet5, vgg16-bn, preresnet-110, preresnet-164, wrn-28-10, resnet-18, resnet-50).
        #[arg(long, default_value = "quick")]
        preset: String,
        /// Write the network as its list of layers (`arch = "layers"`), ready to edit.
        #[arg(long)]
        layers: bool,
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
        /// Only the paper's networks (VGG16-BN, ResNet-18, the ViT): a training step
        /// at batch 128 of 32×32 colour images (part of --full; minutes on a software
        /// rasteriser).
        #[arg(long)]
        networks: bool,
        /// How fast the image folder DIR loads instead: images/s of decoding, resizing
        /// and centre-cropping to --image-size on every core, and uploading (compare
        /// bench/pytorch_loader.py on the same files).
        #[arg(long, value_name = "DIR")]
        loader: Option<std::path::PathBuf>,
        /// The side the loader benchmark resizes to.
        #[arg(long, default_value_t = 224)]
        image_size: usize,
    },
}

fn main() {
    twa::gpu::context::quiet_display_probe();
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
        Command::Landscape(args) => cli::landscape::landscape(&job, adapter, args),
        Command::Plan(args) => cli::plan::plan(args),
        Command::Config { preset, layers } => RunConfig::preset(&preset)
            .and_then(|c| if layers { c.with_layer_list() } else { Ok(c) })
            .map(|c| print!("{}", c.to_toml())),
        Command::Bench {
            full,
            json,
            collective,
            networks,
            loader,
            image_size,
        } => job.gpu(adapter).and_then(|gpu| {
            if let Some(dir) = loader {
                twa::bench::loader::measure(&gpu, &dir, image_size, json)
            } else if collective {
                twa::bench::collective::measure(&gpu, &*job.world)
            } else if networks {
                twa::bench::networks(&gpu, json)
            } else {
                twa::bench::profile(&gpu, full, json)
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
