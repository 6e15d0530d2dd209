//! `twa run`: one command from data to a side-by-side comparison. Head stage: SGD on
//! the first epochs with sampling, then SWA and TWA on those samples, and optionally the
//! full SGD schedule. Tail stage: the full SGD schedule, an SWA phase at a constant LR
//! with sampling, then SWA and TWA on the SWA-phase samples.

use super::config::{RunConfig, Stage};
use super::progress::{train_with_checkpoints, Progress, Row, SaveCheckpoint};
use super::History;
use crate::collective::Collective;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{DeviceMemory, Totals};
use crate::train::{Event, Schedule, SharedSamples, Trainer, TrainerState};
use crate::train::{SamplePlan, SampleStore};
use crate::twa::average::{evaluate_at, train_twa};
use crate::twa::config::twa_train_config;
use crate::twa::mean::mean;
use crate::twa::Samples;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use web_time::Instant;

/// What a pipeline produced: the table, and the bytes each rank held on its device
/// for each part: a network (parameters, activations), the samples, and TWA's share
/// of the directions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub bytes_per_rank: DeviceMemory,
}

fn row(method: &str, epochs: f64, totals: &Totals, seconds: f64) -> Row {
    Row {
        method: method.into(),
        epochs,
        test_acc: totals.accuracy(),
        test_loss: totals.mean_loss(),
        seconds,
    }
}

/// Where to continue a stopped run: its trainer state and progress.
pub struct Resume {
    pub trainer: TrainerState,
    pub progress: Progress,
}

/// How a pipeline keeps checkpoints: a run to continue, if any, and where to save.
pub struct Checkpointing<'s> {
    pub resume: Option<Resume>,
    /// Called with a snapshot after every SGD epoch (None: no checkpoints).
    pub save: Option<Box<SaveCheckpoint<'s>>>,
}

impl Checkpointing<'_> {
    /// No checkpoints (the app's demos).
    pub fn none() -> Self {
        Checkpointing {
            resume: None,
            save: None,
        }
    }
}

/// Run the pipeline of `config`; writes `out/history.safetensors` and the averaged
/// weights; returns the table rows. Every row is also reported as [`Event::Result`]
/// when known. Setting `stop` ends the run at the next step with [`Error::Stopped`].
/// `checkpoints.save` is handed a checkpoint after every SGD epoch and at a stop
/// during SGD; `checkpoints.resume` continues from one.
pub async fn execute(
    gpu: &Gpu,
    collective: &dyn Collective,
    data: &Dataset,
    config: &RunConfig,
    out: Option<&Path>,
    stop: &Arc<AtomicBool>,
    observer: &mut dyn FnMut(Event),
    checkpoints: Checkpointing<'_>,
) -> Result<Outcome> {
    let Checkpointing { resume, mut save } = checkpoints;
    let p = &config.pipeline;
    config.twa.validate()?;
    let sgd_epochs = config.train.epochs;
    if p.samples_per_epoch == 0 {
        return Err(Error::Config(
            "pipeline.samples_per_epoch must be at least 1".into(),
        ));
    }
    // `[data] holdout`: SGD never sees the validation samples; TWA-v trains on them.
    let split;
    let (data, val) = if config.data.holdout > 0 {
        split = config.training_split(data.clone())?;
        (&split.0, split.1.as_ref())
    } else {
        (data, None)
    };
    if let Some(val) = val {
        observer(Event::Phase(format!(
            "validation: {} training samples held out, {} trained on; TWA-v's coefficients \
             train on the held-out ones",
            val.train.count, data.train.count
        )));
    }
    let before = resume.as_ref().map_or(0.0, |r| r.progress.seconds);
    let started = Instant::now()
        .checked_sub(std::time::Duration::from_secs_f64(before))
        .unwrap_or_else(Instant::now);
    let mut trainer = Trainer::new(gpu, data, &config.model, config.train.clone())?;
    trainer.distribute(collective)?;
    trainer.stop = stop.clone();
    let mut memory = trainer.net.memory();
    let report = |observer: &mut dyn FnMut(Event), row: &Row, alpha: Option<Vec<f64>>| {
        observer(Event::Result {
            method: row.method.clone(),
            test_acc: row.test_acc,
            test_loss: row.test_loss,
            alpha,
        })
    };
    let progress = |phase: &str, rows: &[Row], averaging_seconds: f64| Progress {
        phase: phase.into(),
        rows: rows.to_vec(),
        seconds: started.elapsed().as_secs_f64(),
        averaging_seconds,
    };
    // Where a resumed run continues: the phase, the first epoch of it, the rows known.
    let resumed_phase = resume.as_ref().map(|r| r.progress.phase.clone());
    let (first_epoch, mut rows, mut averaging_seconds) = match &resume {
        Some(r) => (
            r.trainer.epoch,
            r.progress.rows.clone(),
            r.progress.averaging_seconds,
        ),
        None => (0, Vec::new(), 0.0),
    };
    let in_phase = |phase: &str| resumed_phase.as_deref().is_none_or(|p| p == phase);
    let start_of = |phase: &str| {
        if resumed_phase.as_deref() == Some(phase) {
            first_epoch
        } else {
            0
        }
    };
    let known: &[&str] = match p.stage {
        Stage::Head => &["sgd", "continue"],
        Stage::Tail => &["sgd", "swa-phase"],
    };
    if let Some(phase) = resumed_phase.as_deref().filter(|p| !known.contains(p)) {
        return Err(Error::Config(format!(
            "the checkpoint's phase `{phase}` is not one of this pipeline's ({})",
            known.join(", ")
        )));
    }
    let restore = |trainer: &mut Trainer, phase: &str| -> Result<()> {
        if let Some(r) = resume.as_ref().filter(|r| r.progress.phase == phase) {
            r.trainer.check_fits(trainer)?;
            trainer.restore_state(&r.trainer);
        }
        Ok(())
    };
    let sampled_epochs = match p.stage {
        Stage::Head => {
            if p.head_epochs == 0 || p.head_epochs > sgd_epochs {
                return Err(Error::Config(format!(
                    "pipeline.head_epochs must be in 1..={sgd_epochs}"
                )));
            }
            if in_phase("sgd") {
                let plan = SamplePlan {
                    per_epoch: p.samples_per_epoch,
                    first_epoch: 1,
                    last_epoch: p.head_epochs,
                };
                trainer.attach_sampler(plan)?;
                restore(&mut trainer, "sgd")?;
                observer(Event::Phase(format!(
                    "SGD, epochs 1–{} of {sgd_epochs}, {} samples per epoch",
                    p.head_epochs, p.samples_per_epoch
                )));
                let at_head = train_with_checkpoints(
                    &mut trainer,
                    start_of("sgd")..p.head_epochs,
                    &|| progress("sgd", &[], 0.0),
                    observer,
                    save.as_deref_mut(),
                )
                .await?;
                let label = format!("SGD (epoch {})", p.head_epochs);
                let sgd_row = row(
                    &label,
                    p.head_epochs as f64,
                    &at_head,
                    started.elapsed().as_secs_f64(),
                );
                report(observer, &sgd_row, None);
                rows.push(sgd_row);
            }
            p.head_epochs
        }
        Stage::Tail => {
            if !(1..=crate::train::MAX_EPOCHS).contains(&p.swa_epochs)
                || p.swa_lr.is_nan()
                || p.swa_lr <= 0.0
            {
                return Err(Error::Config(
                    "pipeline.swa_epochs must be in 1..=1000000 and pipeline.swa_lr positive"
                        .into(),
                ));
            }
            if in_phase("sgd") {
                restore(&mut trainer, "sgd")?;
                observer(Event::Phase(format!("SGD, {sgd_epochs} epochs")));
                let at_end = train_with_checkpoints(
                    &mut trainer,
                    start_of("sgd")..sgd_epochs,
                    &|| progress("sgd", &[], 0.0),
                    observer,
                    save.as_deref_mut(),
                )
                .await?;
                let sgd_row = row(
                    "SGD",
                    sgd_epochs as f64,
                    &at_end,
                    started.elapsed().as_secs_f64(),
                );
                report(observer, &sgd_row, None);
                rows.push(sgd_row);
            }
            let plan = SamplePlan {
                per_epoch: p.samples_per_epoch,
                first_epoch: 1,
                last_epoch: p.swa_epochs,
            };
            trainer.attach_sampler(plan)?;
            trainer.config.lr = p.swa_lr;
            trainer.config.schedule = Schedule::Constant;
            trainer.config.epochs = p.swa_epochs;
            restore(&mut trainer, "swa-phase")?;
            observer(Event::Phase(format!(
                "SWA phase, {} epochs at constant lr {}",
                p.swa_epochs, p.swa_lr
            )));
            let at_swa_end = train_with_checkpoints(
                &mut trainer,
                start_of("swa-phase")..p.swa_epochs,
                &|| progress("swa-phase", &rows, 0.0),
                observer,
                save.as_deref_mut(),
            )
            .await?;
            let label = format!("SGD (+{} SWA-phase epochs)", p.swa_epochs);
            let swa_phase_row = row(
                &label,
                (sgd_epochs + p.swa_epochs) as f64,
                &at_swa_end,
                started.elapsed().as_secs_f64(),
            );
            report(observer, &swa_phase_row, None);
            rows.push(swa_phase_row);
            sgd_epochs + p.swa_epochs
        }
    };
    if in_phase("sgd") || in_phase("swa-phase") {
        let (_, store) = trainer.sampler.take().expect("sampler attached above");
        memory.samples = store.bytes();
        let history = History {
            table: trainer.net.model.params.clone(),
            samples: store.read(gpu).await?,
            infos: store.infos.clone(),
            config: config.clone(),
        };
        let averaging_started = started.elapsed().as_secs_f64();
        let (averaged, subspace) = average(
            gpu,
            collective,
            data,
            val,
            config,
            (&history, &store),
            out,
            stop,
            observer,
        )
        .await?;
        memory.subspace = subspace;
        for (r, alpha) in averaged {
            let r = Row {
                epochs: r.epochs + sampled_epochs as f64,
                seconds: r.seconds + averaging_started,
                ..r
            };
            report(observer, &r, Some(alpha));
            rows.push(r);
        }
        averaging_seconds = started.elapsed().as_secs_f64() - averaging_started;
    }

    if p.stage == Stage::Head && p.full && p.head_epochs < sgd_epochs {
        restore(&mut trainer, "continue")?;
        observer(Event::Phase(format!(
            "SGD, epochs {}–{sgd_epochs} (the full run, for comparison)",
            p.head_epochs + 1
        )));
        let full = train_with_checkpoints(
            &mut trainer,
            start_of("continue").max(p.head_epochs)..sgd_epochs,
            &|| progress("continue", &rows, averaging_seconds),
            observer,
            save.as_deref_mut(),
        )
        .await?;
        // The SGD run's own time: the whole run's less the averaging's.
        let full_row = row(
            &format!("SGD (epoch {sgd_epochs})"),
            sgd_epochs as f64,
            &full,
            started.elapsed().as_secs_f64() - averaging_seconds,
        );
        report(observer, &full_row, None);
        rows.push(full_row);
    }
    Ok(Outcome {
        rows,
        bytes_per_rank: memory,
    })
}

/// A row of the table and the averaging coefficients behind it.
type RowWithAlpha = (Row, Vec<f64>);

/// SWA and TWA of `history` on a second network (so that the SGD run can go on
/// afterwards), TWA's subspace built from the same samples still in the sampler's
/// `store`: saves history, SWA and TWA weights and α into `out` (if any; the
/// browser has no files); returns their
/// rows (epochs of averaging, seconds since the samples were ready) with α, and the
/// bytes of TWA's directions on this rank.
async fn average(
    gpu: &Gpu,
    collective: &dyn Collective,
    data: &Dataset,
    val: Option<&Dataset>,
    config: &RunConfig,
    (history, store): (&History, &SampleStore),
    out: Option<&Path>,
    stop: &Arc<AtomicBool>,
    observer: &mut dyn FnMut(Event),
) -> Result<(Vec<RowWithAlpha>, u64)> {
    let twa = config.twa.clone();
    let dim = history.dim();
    if let Some(out) = out {
        history.save(&out.join("history.safetensors"))?;
    }
    observer(Event::Samples(SharedSamples {
        samples: Arc::new(history.samples.clone()),
        dim,
    }));
    let mut averager = Trainer::new(
        gpu,
        data,
        &config.model,
        twa_train_config(&config.train, &twa),
    )?;
    averager.distribute(collective)?;
    averager.stop = stop.clone();
    let meta = crate::run::model_file::describe(config, data);
    let swa_started = Instant::now();
    let swa_params = mean(&history.samples, dim);
    let swa = evaluate_at(&mut averager, &swa_params).await?;
    let swa_row = row("SWA", 0.0, &swa, swa_started.elapsed().as_secs_f64());
    let swa_alpha = vec![1.0 / history.len() as f64; history.len()];
    if let Some(out) = out {
        crate::run::model_file::save(
            &out.join("swa.safetensors"),
            &averager.net.model,
            &swa_params,
            &averager.net.read_state(gpu).await?,
            meta.clone(),
        )?;
    }
    observer(Event::Phase(format!(
        "TWA, {} epochs at lr {} from {:?} over {} samples",
        twa.epochs,
        twa.lr,
        twa.start,
        history.len()
    )));
    // TWA-v: the coefficients train on the held-out samples, BatchNorm on the rest.
    let mut val_trainer = val
        .map(|v| Trainer::new(gpu, v, &config.model, twa_train_config(&config.train, &twa)))
        .transpose()?;
    if let Some(t) = val_trainer.as_mut() {
        t.distribute(collective)?;
        t.stop = stop.clone();
    }
    let coefficients = val_trainer.as_mut().unwrap_or(&mut averager);
    let samples = Samples {
        host: &history.samples,
        device: Some(store),
    };
    let run = train_twa(gpu, coefficients, samples, &twa, observer).await?;
    let mut t = run.outcome;
    if val_trainer.is_some() {
        crate::twa::average::re_evaluate(&mut averager, &mut t).await?;
    }
    let twa_row = Row {
        method: if val.is_some() { "TWA-v" } else { "TWA" }.into(),
        epochs: twa.epochs as f64,
        test_acc: t.test_acc,
        test_loss: t.test_loss,
        seconds: t.seconds,
    };
    if let Some(out) = out {
        crate::run::model_file::save(
            &out.join("twa.safetensors"),
            &averager.net.model,
            &t.params,
            &t.state,
            meta,
        )?;
        write_alpha(out, &t)?;
    }
    if !run.dropped.is_empty() {
        observer(Event::Phase(format!(
            "note: {} near-duplicate samples left out of the subspace: {:?}",
            run.dropped.len(),
            run.dropped
        )));
    }
    let subspace = t.subspace_bytes.unwrap_or(0) as u64;
    Ok((vec![(swa_row, swa_alpha), (twa_row, t.alpha)], subspace))
}

/// OUT/twa_alpha.json: α over the samples, per layer too for per-layer coefficients,
/// and the bytes the subspace held.
fn write_alpha(out: &Path, twa: &crate::twa::outcome::Averaged) -> Result<()> {
    let json = serde_json::json!({
        "alpha": twa.alpha,
        "alpha_per_block": twa.alpha_per_block,
        "subspace_bytes": twa.subspace_bytes,
    });
    let text = serde_json::to_string(&json).expect("serialises");
    crate::files::write_atomic(&out.join("twa_alpha.json"), text.as_bytes())
}
