//! `twa plan`: memory per device and bytes exchanged per step, before running.

use clap::Args;
use twa::error::{Error, Result};
use twa::run::config::{RunConfig, PRESETS};
use twa::run::plan::{self, Plan, PAPER_MODELS};

#[derive(Args)]
pub struct PlanArgs {
    /// A preset to plan (may repeat) [default: every preset and every paper model].
    #[arg(long)]
    preset: Vec<String>,
    /// A config file to plan, its network sized for the input its data presumably
    /// has (may repeat).
    #[arg(long)]
    config: Vec<std::path::PathBuf>,
    /// One of the paper's models, sized from its architecture: vgg16-bn,
    /// preresnet-164, wrn-28-10, resnet-18, resnet-50, vit (may repeat).
    #[arg(long)]
    model: Vec<String>,
    /// TWA samples: rows of the subspace.
    #[arg(long, default_value_t = 51)]
    samples: usize,
    /// Ranks (devices) sharing each batch and the subspace's rows.
    #[arg(long, default_value_t = 1)]
    ranks: usize,
    /// Bits per stored direction value: 32 (the orthonormal basis), 8, 4, 2 or 1.
    #[arg(long, default_value_t = 32)]
    bits: u32,
    /// Global batch size [default: the preset's; 128 for the paper's models].
    #[arg(long)]
    batch: Option<usize>,
    /// The adapter's largest storage binding in bytes, for what exceeds it [default:
    /// WebGPU's default limit, also lavapipe's].
    #[arg(long, default_value_t = 128 << 20)]
    binding: u64,
    /// Print the plans as one JSON array, the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// Bytes as MiB or GiB.
fn size(bytes: usize) -> String {
    let mib = bytes as f64 / (1 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

pub fn plan(args: PlanArgs) -> Result<()> {
    if args.ranks == 0 || args.samples == 0 || args.batch == Some(0) {
        return Err(Error::Config(
            "--ranks, --samples and --batch must be at least 1".into(),
        ));
    }
    if !twa::twa::directions::BITS.contains(&args.bits) {
        return Err(Error::Config(format!(
            "--bits {}: directions are stored at 1, 2, 4, 8 or 32 bits",
            args.bits
        )));
    }
    let everything = args.preset.is_empty() && args.model.is_empty() && args.config.is_empty();
    let presets: Vec<String> = if everything {
        PRESETS.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        args.preset.clone()
    };
    let models: Vec<String> = if everything {
        PAPER_MODELS.iter().map(|n| n.to_string()).collect()
    } else {
        args.model.clone()
    };
    let mut configs: Vec<(String, RunConfig)> = Vec::new();
    for name in &presets {
        let config = RunConfig::preset(name)?;
        configs.push((
            format!("preset {name} ({})", config.model.arch.name()),
            config,
        ));
    }
    for path in &args.config {
        configs.push((format!("{}", path.display()), RunConfig::load(path)?));
    }
    let mut plans: Vec<Plan> = Vec::new();
    let mut beyond: Vec<(String, Vec<String>)> = Vec::new();
    let mut note = |label: &str, sizes: &plan::Sizes, batch: usize| {
        let notes = sizes.beyond_binding(batch.div_ceil(args.ranks), args.bits, args.binding);
        if !notes.is_empty() {
            beyond.push((label.to_string(), notes));
        }
    };
    for (label, config) in &configs {
        let sizes = plan::preset_sizes(config)?;
        let batch = args.batch.unwrap_or(config.train.batch);
        note(label, &sizes, batch);
        plans.push(plan::plan(
            label,
            sizes,
            batch,
            args.samples,
            args.ranks,
            args.bits,
            args.binding,
        )?);
    }
    for name in &models {
        let (label, sizes) = plan::paper_model(name)?;
        let batch = args.batch.unwrap_or(128);
        note(label, &sizes, batch);
        plans.push(plan::plan(
            label,
            sizes,
            batch,
            args.samples,
            args.ranks,
            args.bits,
            args.binding,
        )?);
    }
    println!(
        "per device with {} rank(s), {} TWA samples at {} bits ({} rows each):",
        args.ranks,
        args.samples,
        args.bits,
        args.samples.div_ceil(args.ranks)
    );
    println!(
        "{:<36} {:>12} {:>6} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "model",
        "parameters",
        "batch",
        "w, g, v",
        "activations",
        "subspace",
        "total",
        "sent per step"
    );
    for p in &plans {
        println!(
            "{:<36} {:>12} {:>6} {:>12} {:>12} {:>12} {:>12} {:>14}",
            p.model,
            p.params,
            p.batch_per_rank,
            size(p.parameter_bytes + p.gradient_bytes + p.momentum_bytes),
            size(p.activation_bytes),
            size(p.subspace_bytes),
            size(p.total_bytes),
            size(p.gradient_exchange_bytes + p.projection_exchange_bytes),
        );
    }
    println!(
        "activations: every layer's output and the gradient buffers (shared where their \
         lifetimes do not overlap) at the batch per rank, plus the largest im2col buffer \
         (as many samples as one binding holds); sent: ring all-reduce of the gradient, and during TWA of the \
         ranks' projections (D values each)"
    );
    if !beyond.is_empty() {
        println!(
            "beyond one storage binding of {}:",
            size(args.binding as usize)
        );
        for (model, notes) in &beyond {
            println!("  {model}: {}", notes.join("; "));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&plans).expect("serialises"));
    }
    Ok(())
}
