//! `twa run`: one command from data to a side-by-side comparison. Head stage: SGD on
//! the first epochs with sampling, then SWA and TWA on those samples, and optionally the
//! full SGD schedule. Tail stage: the full SGD schedule, an SWA phase at a constant LR
//! with sampling, then SWA and TWA on the SWA-phase samples.

use super::average::{evaluate_at, mean, train_twa, twa_train_config};
use super::{History, SamplePlan, SampleStore};
use crate::config::{RunConfig, Stage};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::Totals;
use crate::train::{EpochMetrics, Event, Schedule, SharedSamples, Trainer};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// One line of the final table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub method: String,
    /// Epochs of training behind the result (sampling run + averaging).
    pub epochs: f64,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
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

/// Train epochs `range` (0-based) of `trainer`'s schedule, evaluating after each.
fn train_epochs(
    trainer: &mut Trainer,
    range: std::ops::Range<usize>,
    observer: &mut dyn FnMut(Event),
) -> Result<Totals> {
    let mut last = Totals::default();
    for epoch in range {
        let started = Instant::now();
        let (train, lr) = trainer.train_epoch(epoch, observer)?;
        last = trainer.evaluate()?;
        observer(Event::Epoch(EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: train.mean_loss(),
            train_acc: train.accuracy(),
            test_loss: last.mean_loss(),
            test_acc: last.accuracy(),
            seconds: started.elapsed().as_secs_f64(),
        }));
    }
    Ok(last)
}

/// Run the pipeline of `config`; writes `out/history.safetensors` and the averaged
/// weights; returns the table rows. Every row is also reported as [`Event::Result`]
/// when known. Setting `stop` ends the run at the next step with [`Error::Stopped`].
pub fn run(
    gpu: &Gpu,
    data: &Dataset,
    config: &RunConfig,
    out: &Path,
    stop: &Arc<AtomicBool>,
    observer: &mut dyn FnMut(Event),
) -> Result<Vec<Row>> {
    let p = &config.pipeline;
    let twa = config.twa.to_twa()?;
    let sgd_epochs = config.train.epochs;
    if p.samples_per_epoch == 0 {
        return Err(Error::Config(
            "pipeline.samples_per_epoch must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let mut trainer = Trainer::new(gpu, data, &config.model, config.train.clone())?;
    trainer.stop = stop.clone();
    let report = |observer: &mut dyn FnMut(Event), row: &Row, alpha: Option<Vec<f64>>| {
        observer(Event::Result {
            method: row.method.clone(),
            test_acc: row.test_acc,
            test_loss: row.test_loss,
            alpha,
        })
    };
    let dim = trainer.net.model.num_params();
    let mut rows = Vec::new();
    let (sampled_epochs, sgd_row) = match p.stage {
        Stage::Head => {
            if p.head_epochs == 0 || p.head_epochs > sgd_epochs {
                return Err(Error::Config(format!(
                    "pipeline.head_epochs must be in 1..={sgd_epochs}"
                )));
            }
            let plan = SamplePlan {
                per_epoch: p.samples_per_epoch,
                first_epoch: 1,
                last_epoch: p.head_epochs,
            };
            trainer.sampler = Some((plan.clone(), SampleStore::new(gpu, dim, plan.count())?));
            observer(Event::Phase(format!(
                "SGD, epochs 1–{} of {sgd_epochs}, {} samples per epoch",
                p.head_epochs, p.samples_per_epoch
            )));
            let at_head = train_epochs(&mut trainer, 0..p.head_epochs, observer)?;
            let label = format!("SGD (epoch {})", p.head_epochs);
            (
                p.head_epochs,
                row(
                    &label,
                    p.head_epochs as f64,
                    &at_head,
                    started.elapsed().as_secs_f64(),
                ),
            )
        }
        Stage::Tail => {
            if p.swa_epochs == 0 || p.swa_lr.is_nan() || p.swa_lr <= 0.0 {
                return Err(Error::Config(
                    "pipeline.swa_epochs and pipeline.swa_lr must be positive".into(),
                ));
            }
            observer(Event::Phase(format!("SGD, {sgd_epochs} epochs")));
            let at_end = train_epochs(&mut trainer, 0..sgd_epochs, observer)?;
            let sgd_row = row(
                "SGD",
                sgd_epochs as f64,
                &at_end,
                started.elapsed().as_secs_f64(),
            );
            let plan = SamplePlan {
                per_epoch: p.samples_per_epoch,
                first_epoch: 1,
                last_epoch: p.swa_epochs,
            };
            trainer.sampler = Some((plan.clone(), SampleStore::new(gpu, dim, plan.count())?));
            trainer.config.lr = p.swa_lr;
            trainer.config.schedule = Schedule::Constant;
            trainer.config.epochs = p.swa_epochs;
            observer(Event::Phase(format!(
                "SWA phase, {} epochs at constant lr {}",
                p.swa_epochs, p.swa_lr
            )));
            let at_swa_end = train_epochs(&mut trainer, 0..p.swa_epochs, observer)?;
            report(observer, &sgd_row, None);
            rows.push(sgd_row);
            let label = format!("SGD (+{} SWA-phase epochs)", p.swa_epochs);
            (
                sgd_epochs + p.swa_epochs,
                row(
                    &label,
                    (sgd_epochs + p.swa_epochs) as f64,
                    &at_swa_end,
                    started.elapsed().as_secs_f64(),
                ),
            )
        }
    };
    report(observer, &sgd_row, None);
    rows.push(sgd_row);
    let (_, store) = trainer.sampler.take().expect("sampler attached above");
    let history = History {
        table: trainer.net.model.params.clone(),
        samples: store.read(gpu)?,
        infos: store.infos.clone(),
        config: config.clone(),
    };
    history.save(&out.join("history.safetensors"))?;
    observer(Event::Samples(SharedSamples {
        samples: Arc::new(history.samples.clone()),
        dim,
    }));

    // SWA and TWA on a second network, so that the SGD run can go on afterwards.
    let sampling_seconds = started.elapsed().as_secs_f64();
    let mut averager = Trainer::new(
        gpu,
        data,
        &config.model,
        twa_train_config(&config.train, &twa),
    )?;
    averager.stop = stop.clone();
    let swa_started = Instant::now();
    let swa_params = mean(&history.samples, dim);
    let swa = evaluate_at(&mut averager, &swa_params)?;
    let swa_row = row(
        "SWA",
        sampled_epochs as f64,
        &swa,
        sampling_seconds + swa_started.elapsed().as_secs_f64(),
    );
    report(
        observer,
        &swa_row,
        Some(vec![1.0 / history.len() as f64; history.len()]),
    );
    rows.push(swa_row);
    crate::checkpoint::save(
        &out.join("swa.safetensors"),
        &averager.net.model,
        &swa_params,
        &averager.net.read_state(gpu)?,
        Default::default(),
    )?;
    observer(Event::Phase(format!(
        "TWA, {} epochs at lr {} from {:?} over {} samples",
        twa.epochs,
        twa.lr,
        twa.start,
        history.len()
    )));
    let run = train_twa(gpu, &mut averager, &history.samples, &twa, observer)?;
    let t = &run.outcome;
    let twa_row = Row {
        method: "TWA".into(),
        epochs: (sampled_epochs + twa.epochs) as f64,
        test_acc: t.test_acc,
        test_loss: t.test_loss,
        seconds: sampling_seconds + t.seconds,
    };
    report(observer, &twa_row, Some(t.alpha.clone()));
    rows.push(twa_row);
    crate::checkpoint::save(
        &out.join("twa.safetensors"),
        &averager.net.model,
        &t.params,
        &t.state,
        Default::default(),
    )?;
    if !run.dropped.is_empty() {
        observer(Event::Phase(format!(
            "note: {} near-duplicate samples left out of the subspace: {:?}",
            run.dropped.len(),
            run.dropped
        )));
    }
    write_alpha(out, &t.alpha)?;

    if p.stage == Stage::Head && p.full && p.head_epochs < sgd_epochs {
        observer(Event::Phase(format!(
            "SGD, epochs {}–{sgd_epochs} (the full run, for comparison)",
            p.head_epochs + 1
        )));
        let continued = Instant::now();
        let full = train_epochs(&mut trainer, p.head_epochs..sgd_epochs, observer)?;
        let seconds = sampling_seconds + continued.elapsed().as_secs_f64();
        let full_row = row(
            &format!("SGD (epoch {sgd_epochs})"),
            sgd_epochs as f64,
            &full,
            seconds,
        );
        report(observer, &full_row, None);
        rows.push(full_row);
    }
    Ok(rows)
}

fn write_alpha(out: &Path, alpha: &[f64]) -> Result<()> {
    let text = serde_json::to_string(&serde_json::json!({ "alpha": alpha })).expect("serialises");
    crate::files::write_atomic(&out.join("twa_alpha.json"), text.as_bytes())
}
