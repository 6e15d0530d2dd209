//! Explicit-coefficient TWA (the journal's form) on a trainer: β per (direction,
//! block) over the stored directions of `directions`, updated by SGD or AdamW inside
//! each training step, reported as α over the samples.

use super::config::{sample_count, start_sample, TwaConfig};
use super::directions::{self, Coefficients, Directions, Packed};
use super::outcome::{Averaged, BlockAlpha, TwaRun};
use crate::collective::DeviceSum;
use crate::error::{Error, Result};
use crate::gpu::kernels::submit;
use crate::gpu::Gpu;
use crate::nn::Optimizer;
use crate::nn::{optim, GradientStep};
use crate::train::trainer::Watch;
use crate::train::{Event, Trainer};

/// Explicit-coefficient TWA (the journal's form): w = c + Σ_i β_i ⊙ d_i over the
/// per-block normalised directions d_i = w_i − c stored at `twa.bits` bits; each step
/// takes ∂L/∂β (per-block dots with g), updates β by SGD or AdamW and rebuilds w,
/// all in the step's command encoder. Then BatchNorm re-estimation and evaluation.
pub(crate) async fn train_explicit(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    samples: &[f32],
    twa: &TwaConfig,
    observer: &mut dyn FnMut(Event),
) -> Result<TwaRun> {
    let started = web_time::Instant::now();
    let dim = trainer.net.model.num_params();
    let n = sample_count(samples, dim)?;
    let blocks = directions::blocks(
        &trainer.net.model.params,
        twa.coefficients == Coefficients::Layer,
    );
    let nb = blocks.len();
    let (centre, dirs, norms) = directions::normalised_directions(samples, dim, &blocks);
    // Sharded over R ranks, rank r keeps directions r, r + R, … and their β; its
    // centre is c on rank 0 and 0 elsewhere, so that the ranks' w sum to c + Σ β ⊙ d.
    let collective = trainer.collective();
    let (me, ranks) = (collective.rank(), collective.size());
    if n < ranks {
        return Err(Error::Config(format!(
            "explicit-coefficient TWA over {ranks} ranks needs at least {ranks} samples, got {n}"
        )));
    }
    let mine: Vec<usize> = (me..n).step_by(ranks).collect();
    let local: Vec<f32> = mine
        .iter()
        .flat_map(|&i| dirs[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    drop(dirs);
    let mut packed = Packed::pack(&local, dim, &blocks, twa.bits)?;
    packed.renormalise();
    drop(local);
    let centre = if me == 0 { centre } else { vec![0.0; dim] };
    let space = Directions::upload(gpu, &centre, &packed)?;
    // β at the start: 0 is the centre (SWA); a sample is its norms on its own row.
    let mut beta0 = vec![0.0f32; n * nb];
    let from_sample = start_sample(twa.start, n)?;
    if let Some(i) = from_sample {
        for b in 0..nb {
            beta0[i * nb + b] = norms[i * nb + b] as f32;
        }
    }
    let local_beta0: Vec<f32> = mine
        .iter()
        .flat_map(|&i| beta0[i * nb..(i + 1) * nb].iter().copied())
        .collect();
    let beta = gpu.storage_init(&local_beta0, "beta");
    explicit_steps(gpu, trainer, &space, &beta, twa).await?;
    // Every rank's β in sample order (n × blocks).
    let gather = move |local: &[f32]| {
        let mut all = vec![0.0f64; n * nb];
        for (l, &i) in mine.iter().enumerate() {
            for b in 0..nb {
                all[i * nb + b] = local[l * nb + b] as f64;
            }
        }
        collective.sum(&mut all);
        all
    };
    // α over the samples: per block, and their mean weighted by the blocks' sizes.
    let shares: Vec<f64> = blocks
        .iter()
        .map(|b| b.range.len() as f64 / dim as f64)
        .collect();
    let alpha_of = move |beta: &[f64]| {
        let per_block = directions::averaging_coefficients(beta, &norms, nb);
        let mut mean = vec![0.0; n];
        for (share, alpha) in shares.iter().zip(&per_block) {
            mean.iter_mut()
                .zip(alpha)
                .for_each(|(m, a)| *m += share * a);
        }
        (mean, per_block)
    };
    // The event of a β: with per-layer coefficients each layer's α too.
    let names: Vec<String> = match twa.coefficients {
        Coefficients::Layer => blocks.iter().map(|b| b.name.clone()).collect(),
        _ => Vec::new(),
    };
    let event_of = {
        let alpha_of = alpha_of.clone();
        move |beta: &[f64]| {
            let (alpha, per_block) = alpha_of(beta);
            let per_layer = names.iter().cloned().zip(per_block).collect();
            Event::Coefficients { alpha, per_layer }
        }
    };
    observer(event_of(&vec![0.0; n * nb]));
    if from_sample.is_some() {
        let beta0: Vec<f64> = beta0.iter().map(|&b| b as f64).collect();
        observer(event_of(&beta0));
    }
    // α while training, read back with the running loss (in one process: a rank
    // holds only its rows of β).
    let watched = event_of.clone();
    trainer.watch = (ranks == 1).then(|| Watch {
        dispatches: Vec::new(),
        source: beta.clone(),
        words: n * nb,
        to_event: Box::new(move |beta: &[f32]| {
            watched(&beta.iter().map(|&b| b as f64).collect::<Vec<_>>())
        }),
    });
    let trained = trainer.train_all(observer).await;
    trainer.gradient_step = GradientStep::Sgd(Vec::new());
    trainer.watch = None;
    trained?;
    trainer.recalibrate_bn().await?;
    let totals = trainer.evaluate().await?;
    let beta = gather(&gpu.read::<f32>(&beta, 0, space.coefficients()).await?);
    let (alpha, per_block) = alpha_of(&beta);
    observer(event_of(&beta));
    let alpha_per_block = match twa.coefficients {
        Coefficients::Layer => blocks
            .iter()
            .zip(per_block)
            .map(|(b, alpha)| BlockAlpha {
                block: b.name.clone(),
                alpha,
            })
            .collect(),
        _ => Vec::new(),
    };
    let outcome = Averaged {
        method: "twa".into(),
        test_acc: totals.accuracy(),
        test_loss: totals.mean_loss(),
        seconds: started.elapsed().as_secs_f64(),
        alpha,
        alpha_per_block,
        subspace_bytes: Some(space.bytes),
        params: trainer.net.read_params(gpu).await?,
        state: trainer.net.read_state(gpu).await?,
    };
    Ok(TwaRun {
        outcome,
        dropped: Vec::new(),
        rank: n,
    })
}

/// Make `trainer`'s steps explicit-coefficient TWA over `space` with coefficients
/// `beta` (rows × blocks): ∂L/∂β from the gradient, β updated by `twa.optimizer`
/// (fresh optimiser state), the parameters rebuilt from β — and rebuild them now.
/// With several ranks each holds some of the rows: the parameters each rebuilds are
/// its part of the sum, summed over the ranks.
pub async fn explicit_steps(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    space: &Directions,
    beta: &wgpu::Buffer,
    twa: &TwaConfig,
) -> Result<()> {
    let k = &trainer.net.kernels;
    let len = space.coefficients();
    let grad = gpu.storage(len, "grad beta");
    let settings = crate::nn::SgdConfig {
        momentum: twa.momentum as f32,
        weight_decay: twa.weight_decay as f32,
    };
    let step = &trainer.net.step;
    let update = match twa.optimizer {
        Optimizer::Sgd => {
            let velocity = gpu.storage(len, "beta velocity");
            optim::sgd_step(gpu, k, len, settings, &grad, beta, &velocity, step)
        }
        Optimizer::Adamw => {
            let moments = [gpu.storage(len, "beta m"), gpu.storage(len, "beta v")];
            let first = trainer.global_step();
            let moments = [&moments[0], &moments[1]];
            optim::adamw_step(gpu, k, len, settings, first, &grad, beta, moments, step)
        }
    };
    let [dots, sum] = space.gradient(gpu, k, &trainer.net.grads, &grad);
    let combine = space.combine(gpu, k, beta, &trainer.net.params);
    let collective = trainer.collective();
    let mut dispatches = vec![dots, sum];
    dispatches.extend(update);
    dispatches.push(combine);
    let combine = dispatches.len() - 1;
    if collective.size() == 1 {
        submit(gpu, &[&dispatches[combine]]);
        trainer.gradient_step = GradientStep::Replace(dispatches);
        return Ok(());
    }
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        dispatches[combine].record(&mut pass);
    }
    let d = trainer.net.model.num_params();
    DeviceSum::new(gpu, d)
        .sum_in_place(gpu, collective, encoder, &trainer.net.params, d, 1.0)
        .await?;
    trainer.gradient_step = GradientStep::ReplaceSummed(dispatches);
    Ok(())
}
