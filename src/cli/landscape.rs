//! `twa landscape`: the loss over a plane of a history's coefficient space, as
//! OUT/landscape.csv, .png and .json.

use super::job::Job;
use clap::Args;
use pollster::block_on;
use std::path::PathBuf;
use std::time::Instant;
use twa::error::{Error, Result};
use twa::run::History;

#[derive(Args)]
pub struct LandscapeArgs {
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
    /// Bits per stored value of the subspace: 32 (the orthonormal basis of the samples)
    /// or 8, 4, 2, 1 (TWA's directions w_i − mean, quantised: n·D·b/8 bytes).
    #[arg(long, default_value_t = 32)]
    bits: u32,
    /// Print a summary as one JSON object, the last line of stdout.
    #[arg(long)]
    json: bool,
}

pub fn landscape(job: &Job, adapter: Option<&str>, args: LandscapeArgs) -> Result<()> {
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
    if !twa::twa::directions::BITS.contains(&args.bits) {
        return Err(Error::Config(format!(
            "--bits {}: the subspace is stored at 1, 2, 4, 8 or 32 bits",
            args.bits
        )));
    }
    let history = History::load(&args.history)?;
    if history.len() < 2 {
        return Err(Error::Config(format!(
            "a landscape needs at least 2 samples, the history has {}",
            history.len()
        )));
    }
    let _out = twa::outdir::OutputDir::claim(&args.out)?;
    let (config, data) = super::history_data(&history, &args.history, args.data.as_deref())?;
    let twa_params = match &args.twa {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Some(twa::run::model_file::load_table(
                path,
                &bytes,
                &history.table,
            )?)
        }
        None => None,
    };
    let gpu = job.gpu(adapter)?;
    super::describe_setup(&gpu, &data);
    let started = Instant::now();
    let mut land = block_on(Landscape::new(
        &gpu,
        &data,
        &config.model,
        &history.samples,
        args.bits,
        args.batch,
        config.train.seed,
    ))?;
    let twa_point = match twa_params {
        Some(p) => Some(block_on(land.coordinates_of(&p))?),
        None => None,
    };
    let anchors = land.anchors(twa_point);
    let plane = Plane::build(kind, &anchors)?;
    block_on(land.set_plane(&plane))?;
    let subspace_seconds = started.elapsed().as_secs_f64();
    let overlay = landscape::overlay(&plane, &anchors);
    let spec = landscape::grid_around(&overlay, args.grid);
    let bar = indicatif::ProgressBar::new((args.grid * args.grid) as u64);
    let grid_started = Instant::now();
    let mut levels = Vec::new();
    let grid = block_on(land.evaluate(&spec, metric.part(), &*job.world, &mut |g| {
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
    }))?;
    bar.finish_and_clear();
    let grid_seconds = started.elapsed().as_secs_f64() - subspace_seconds;
    let csv = args.out.join("landscape.csv");
    let png = args.out.join("landscape.png");
    twa::files::write_atomic(&csv, grid.to_csv().as_bytes())?;
    let labels = landscape::labels(kind, metric, args.grid, args.batch, args.bits);
    let picture = landscape::render::render_png(&grid, metric, &overlay, &labels, args.size);
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
        "rank": land.space.rank(),
        "bits": land.space.bits(),
        "subspace_bytes": land.space.bytes(),
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
        "{} on the {} plane: {}² points in {grid_seconds:.1} s (subspace of rank {}, {}-bit, {:.1} MiB, in {subspace_seconds:.1} s); lowest {best:.4}",
        metric.label(),
        kind.name(),
        args.grid,
        land.space.rank(),
        land.space.bits(),
        land.space.bytes() as f64 / (1 << 20) as f64,
    );
    eprintln!("wrote {} and {}", csv.display(), png.display());
    if args.json {
        println!("{summary}");
    }
    Ok(())
}
