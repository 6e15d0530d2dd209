//! Averaging a sampled trajectory: SWA (the mean), EMA, and TWA (projected SGD in the
//! samples' span, from the SWA point or a sample), each followed by BatchNorm
//! re-estimation and an evaluation on the test split.

use super::config::{sample_count, start_sample, TwaConfig};
use super::directions::Coefficients;
use super::mean::mean;
use super::outcome::{Averaged, TwaRun};
use super::subspace::{self, Samples, Subspace};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::Totals;
use crate::train::trainer::Watch;
use crate::train::{Event, Trainer};

/// Load `params`, re-estimate BatchNorm, evaluate.
pub async fn evaluate_at(trainer: &mut Trainer<'_>, params: &[f32]) -> Result<Totals> {
    trainer.net.set_params(trainer.gpu, params);
    trainer.recalibrate_bn().await?;
    trainer.evaluate().await
}

/// Re-estimate BatchNorm for `outcome`'s weights on `trainer`'s training split and
/// evaluate them: test accuracy, loss and the BatchNorm state filled in.
pub async fn re_evaluate(trainer: &mut Trainer<'_>, outcome: &mut Averaged) -> Result<()> {
    let totals = evaluate_at(trainer, &outcome.params).await?;
    outcome.test_acc = totals.accuracy();
    outcome.test_loss = totals.mean_loss();
    outcome.state = trainer.net.read_state(trainer.gpu).await?;
    Ok(())
}

/// Coefficients selecting sample `i` of `n`.
fn unit(n: usize, i: usize) -> Vec<f64> {
    let mut a = vec![0.0; n];
    a[i] = 1.0;
    a
}

/// Train the averaging: projected SGD in span(samples) on `trainer` (whose config holds
/// TWA's settings), then BatchNorm re-estimation and evaluation.
pub async fn train_twa(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    samples: Samples<'_>,
    twa: &TwaConfig,
    observer: &mut dyn FnMut(Event),
) -> Result<TwaRun> {
    twa.validate()?;
    if twa.coefficients != Coefficients::Orthonormal {
        return super::explicit::train_explicit(gpu, trainer, samples.host, twa, observer).await;
    }
    let started = web_time::Instant::now();
    let dim = trainer.net.model.num_params();
    let n = sample_count(samples.host, dim)?;
    let host = samples.host;
    let (start, start_alpha) = match start_sample(twa.start, n)? {
        None => (mean(host, dim), vec![1.0 / n as f64; n]),
        Some(i) => (host[i * dim..(i + 1) * dim].to_vec(), unit(n, i)),
    };
    let collective = trainer.collective();
    let space = Subspace::build_sharded(
        gpu,
        &trainer.net.kernels,
        collective,
        samples,
        dim,
        Subspace::rows_per_chunk(gpu, dim)?,
    )
    .await?;
    trainer.gradient_step = space.projected_sgd(gpu, &trainer.net.kernels, &trainer.net.grads);
    let coordinates = gpu.storage(space.rank, "twa coordinates");
    let (transform, samples) = (space.transform.clone(), space.samples);
    // α is watched while training in one process (a rank sees only its rows of P).
    trainer.watch = (!space.is_sharded()).then(|| Watch {
        dispatches: space.coordinate_dispatches(
            gpu,
            &trainer.net.kernels,
            &trainer.net.params,
            &coordinates,
        ),
        source: coordinates,
        words: space.rank,
        to_event: Box::new(move |beta: &[f32]| {
            let beta: Vec<f64> = beta.iter().map(|&b| b as f64).collect();
            Event::Coefficients {
                alpha: subspace::averaging_coefficients(&transform, samples, &beta),
                per_layer: Vec::new(),
            }
        }),
    });
    trainer.net.set_params(gpu, &start);
    observer(Event::Coefficients {
        alpha: start_alpha,
        per_layer: Vec::new(),
    });
    let trained = trainer.train_all(observer).await;
    trainer.watch = None;
    trained?;
    trainer.recalibrate_bn().await?;
    let totals = trainer.evaluate().await?;
    let beta = space
        .coordinates(gpu, &trainer.net.kernels, collective, &trainer.net.params)
        .await?;
    let outcome = Averaged {
        method: "twa".into(),
        test_acc: totals.accuracy(),
        test_loss: totals.mean_loss(),
        seconds: started.elapsed().as_secs_f64(),
        alpha: space.averaging_coefficients(&beta),
        params: trainer.net.read_params(gpu).await?,
        state: trainer.net.read_state(gpu).await?,
        subspace_bytes: Some(space.local_bytes()),
        ..Averaged::default()
    };
    Ok(TwaRun {
        outcome,
        dropped: space.dropped.clone(),
        rank: space.rank,
    })
}
