//! `twa history import`: a history built from checkpoints saved elsewhere (PyTorch's
//! `safetensors.torch.save_file(model.state_dict(), …)`, one file per epoch), matched
//! to the model of a preset or config by tensor name and shape, so that `twa average`
//! and `twa landscape` work on a trajectory trained in another framework.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use twa::error::{Error, Result};
use twa::nn::Model;
use twa::run::History;
use twa::train::SampleInfo;

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Build a history from per-epoch model files, in the order given (the first is
    /// sample 0).
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// Preset whose model the checkpoints hold (see `twa config`).
    #[arg(long, default_value = "quick", conflicts_with = "config")]
    preset: String,
    /// TOML config whose model the checkpoints hold; replaces the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    // The data the model is trained on: input shape, classes, and what `twa average`
    // will read.
    #[command(flatten)]
    data: super::DataArgs,
    /// The history file to write.
    #[arg(long, default_value = "runs/import/history.safetensors")]
    out: PathBuf,
    /// Model files (safetensors), one per sample, in trajectory order.
    #[arg(required = true, num_args = 1..)]
    checkpoints: Vec<PathBuf>,
}

pub fn history(command: HistoryCommand) -> Result<()> {
    match command {
        HistoryCommand::Import(args) => import(args),
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let config = super::base_config(&args.preset, args.config.as_deref(), &args.data)?;
    twa::files::check_replaceable(&args.out)?;
    let data = config.load_data()?;
    let model = Model::build(&config.model, data.train.shape, data.classes)?;
    let mut samples = Vec::with_capacity(args.checkpoints.len() * model.num_params());
    for path in &args.checkpoints {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        samples.extend(twa::run::model_file::load_table(
            path,
            &bytes,
            &model.params,
        )?);
    }
    let history = History {
        table: model.params.clone(),
        samples,
        infos: (0..args.checkpoints.len())
            .map(|i| SampleInfo {
                epoch: i as f64,
                step: 0,
            })
            .collect(),
        config,
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        twa::files::ensure_writable_dir(dir)?;
    }
    history.save(&args.out)?;
    println!(
        "imported {} samples of {} parameters into {}",
        history.len(),
        history.dim(),
        args.out.display()
    );
    Ok(())
}
