//! `twa eval`: a saved model on a test split — loss, accuracy, per-class accuracy and a
//! confusion matrix (CSV + PNG). The model file says what it is (config, input shape,
//! classes, input normalisation); the data's own statistics are not used.

use super::describe_setup;
use clap::Args;
use pollster::block_on;
use std::path::PathBuf;
use twa::confusion::Confusion;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use twa::run::model_file::{load_table, ModelInfo};
use twa::train::Trainer;

#[derive(Args)]
pub struct EvalArgs {
    /// A model file written by `twa train`, `twa run` or `twa average`.
    #[arg(long)]
    model: PathBuf,
    /// IDX, CIFAR binary or image-folder data directory whose test split is used
    /// [default: the one the model was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory for confusion.csv, confusion.png and eval.json.
    #[arg(long, default_value = "runs/eval")]
    out: PathBuf,
    /// Print the results as one JSON object, the last line of stdout.
    #[arg(long)]
    json: bool,
}

pub fn eval(adapter: Option<&str>, args: EvalArgs) -> Result<()> {
    let bytes = std::fs::read(&args.model).map_err(|e| Error::io(&args.model, e))?;
    let info = ModelInfo::read(&args.model, &bytes)?;
    let mut config = info.config.clone();
    if let Some(dir) = &args.data {
        config.set_data_dir(dir);
    }
    config.data.classes = info.classes;
    let _out = twa::outdir::OutputDir::claim(&args.out)?;
    let mut data = config.load_data()?;
    if data.train.shape != info.shape {
        return Err(Error::Shape(format!(
            "{} takes {} inputs but {} holds {} images",
            args.model.display(),
            info.shape,
            data.source.display(),
            data.train.shape
        )));
    }
    // Normalise as the model was trained.
    data.mean = info.mean.clone();
    data.std = info.std.clone();
    let gpu = Gpu::new(adapter)?;
    describe_setup(&gpu, &data);
    let mut trainer = Trainer::new(&gpu, &data, &config.model, config.train.clone())?;
    let params = load_table(&args.model, &bytes, &trainer.net.model.params)?;
    let state = load_table(&args.model, &bytes, &trainer.net.model.state)?;
    trainer.net.set_params(&gpu, &params);
    trainer.net.set_state(&gpu, &state);
    let totals = block_on(trainer.evaluate())?;
    let predicted = block_on(trainer.predict())?;
    let confusion = Confusion::new(data.classes, &data.test.labels, &predicted);
    let csv = args.out.join("confusion.csv");
    let png = args.out.join("confusion.png");
    twa::files::write_atomic(&csv, confusion.to_csv().as_bytes())?;
    twa::files::write_atomic(&png, &confusion.to_png())?;
    let per_class: Vec<f64> = (0..data.classes)
        .map(|c| confusion.class_accuracy(c))
        .collect();
    println!("{:<6} {:>8} {:>10}", "class", "samples", "accuracy");
    for (c, acc) in per_class.iter().enumerate() {
        println!("{c:<6} {:>8} {:>9.2}%", confusion.support(c), 100.0 * acc);
    }
    println!(
        "test accuracy {:.2}% (loss {:.4}) on {} samples; wrote {} and {}",
        100.0 * totals.accuracy(),
        totals.mean_loss(),
        data.test.count,
        csv.display(),
        png.display()
    );
    let summary = serde_json::json!({
        "model": args.model.display().to_string(),
        "data": data.source.display().to_string(),
        "test_acc": totals.accuracy(),
        "test_loss": totals.mean_loss(),
        "samples": data.test.count,
        "per_class_acc": per_class.iter().map(|a| if a.is_nan() { None } else { Some(*a) }).collect::<Vec<_>>(),
        "confusion": (0..data.classes).map(|t| &confusion.counts[t * data.classes..(t + 1) * data.classes]).collect::<Vec<_>>(),
    });
    twa::files::write_atomic(&args.out.join("eval.json"), summary.to_string().as_bytes())?;
    if args.json {
        println!("{summary}");
    }
    Ok(())
}
