//! `twa bench --collective` (under `mpirun -np R` or alone): what distribution costs
//! on this machine — the sum across ranks alone (GB/s), and a data-parallel training
//! step of SGD and of TWA with its directions sharded, with the share of the step
//! spent waiting for the device and in the sums. Rank 0 prints.

use crate::collective::Collective;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::train::Trainer;
use pollster::block_on;
use std::time::Instant;

/// Print the all-reduce bandwidth and the step times (on rank 0).
pub fn measure(gpu: &Gpu, world: &dyn Collective) -> Result<()> {
    let ranks = world.size();
    let say = |line: String| {
        if world.is_root() {
            println!("{line}");
        }
    };
    say(format!(
        "{ranks} rank(s); adapter of rank 0: {}",
        gpu.describe()
    ));
    if ranks == 1 {
        say("one process: no sums across ranks (run it under `mpirun -np R` too)".into());
    } else {
        say("sum of f32 vectors across the ranks (all-reduce):".into());
    }
    for mib in [1usize, 4, 16].into_iter().filter(|_| ranks > 1) {
        let mut values = vec![1.0f32; mib << 18];
        let repeats = 10;
        world.sum_f32(&mut values); // warm-up
        let started = Instant::now();
        for _ in 0..repeats {
            world.sum_f32(&mut values);
        }
        let seconds = started.elapsed().as_secs_f64() / repeats as f64;
        say(format!(
            "  {mib:>3} MiB: {:>8.2} ms  {:>6.2} GB/s (vector bytes / time)",
            1e3 * seconds,
            (mib << 20) as f64 / seconds / 1e9
        ));
    }
    let count = 8192;
    let (mut trainer, mut rng) = super::synthetic_trainer(gpu, count)?;
    trainer.distribute(world)?;
    let config = trainer.config.clone();
    let steps = count.div_ceil(config.batch);
    say(format!(
        "training MLP-BN 784-256-256-10 (D = {}), global batch {}, {count} synthetic samples:",
        trainer.net.model.num_params(),
        config.batch
    ));
    let epoch = |trainer: &mut Trainer, label: &str| -> Result<()> {
        block_on(trainer.train_epoch(0, &mut |_| {}))?; // warm-up: first-use costs
        let (waited, summed) = trainer.exchange_time();
        let started = Instant::now();
        block_on(trainer.train_epoch(0, &mut |_| {}))?;
        let seconds = started.elapsed().as_secs_f64();
        let (w, s) = trainer.exchange_time();
        let (waited, summed) = ((w - waited).as_secs_f64(), (s - summed).as_secs_f64());
        say(format!(
            "  {label:<34} {:>7.2} ms a step; in the sums {:>6.2} ms ({:>4.1} %), waiting for the device before them {:>6.2} ms",
            1e3 * seconds / steps as f64,
            1e3 * summed / steps as f64,
            100.0 * summed / seconds,
            1e3 * waited / steps as f64,
        ));
        Ok(())
    };
    epoch(&mut trainer, "SGD step")?;
    // TWA over 20 samples of this trajectory (P sharded by rows).
    let dim = trainer.net.model.num_params();
    let params = block_on(trainer.net.read_params(gpu))?;
    let samples: Vec<f32> = (0..20)
        .flat_map(|i| params.iter().map(move |&w| w * (1.0 + 0.01 * i as f32)))
        .zip((0..).map(|_| rng.uniform(-1e-3, 1e-3)))
        .map(|(w, e)| w + e)
        .collect();
    let space = block_on(crate::twa::Subspace::build_sharded(
        gpu,
        &trainer.net.kernels,
        world,
        crate::twa::Samples::host(&samples),
        dim,
        crate::twa::Subspace::rows_per_chunk(gpu, dim)?,
    ))?;
    trainer.gradient_step = space.projected_sgd(gpu, &trainer.net.kernels, &trainer.net.grads);
    say(format!(
        "  (TWA: {} rows of P, {} on this rank, {:.1} MiB)",
        space.rank,
        space.local_rows(),
        space.local_bytes() as f64 / (1 << 20) as f64
    ));
    epoch(&mut trainer, "TWA step (projection sharded)")?;
    Ok(())
}
