//! `twa bench`: validate, then time, the kernels on the current adapter. GEMM GFLOP/s
//! for the MLP's shapes and 1024³ (next to numpy's sgemm when python3 + numpy exist,
//! measured in the same run), convolution GFLOP/s at the conv nets' shapes, a per-kernel
//! profile of one `cnn` training step, and end-to-end training samples/s; and
//! (`collective`) what distribution costs, (`loader`) how fast an image folder loads.

pub mod collective;
pub mod loader;

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::gpu::{kernels, Dispatch, Gpu, Kernel, Kernels};
use crate::nn::architecture::Arch;
use crate::nn::layers::{self, LinearParams};
use crate::nn::GradientStep;
use crate::nn::ModelConfig;
use crate::rng::Rng;
use crate::train::{TrainConfig, Trainer};
use pollster::block_on;
use std::time::Instant;

/// A GEMM shape: C[m, n] = A[m, k]·B[k, n].
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "fc1 forward 128×784→256",
        m: 128,
        n: 256,
        k: 784,
    },
    Shape {
        name: "fc2 forward 128×256→256",
        m: 128,
        n: 256,
        k: 256,
    },
    Shape {
        name: "fc3 forward 128×256→10",
        m: 128,
        n: 10,
        k: 256,
    },
    Shape {
        name: "fc1 grad W 256×784 (k=128)",
        m: 256,
        n: 784,
        k: 128,
    },
    Shape {
        name: "fc2 grad x 128×256 (k=256)",
        m: 128,
        n: 256,
        k: 256,
    },
    Shape {
        name: "square 1024³",
        m: 1024,
        n: 1024,
        k: 1024,
    },
];

fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Validate one GEMM variant against the CPU reference (sampled entries), then time
/// it: (GFLOP/s, worst relative error).
fn gemm(
    gpu: &Gpu,
    kernel: &Kernel,
    tile: (usize, usize),
    s: &Shape,
    reps: usize,
) -> Result<(f64, f64)> {
    let mut rng = Rng::new(7);
    let a = random(&mut rng, s.m * s.k);
    let ldb = layers::padded(s.n);
    let b = random(&mut rng, s.k * ldb);
    let (ab, bb, cb) = (
        gpu.storage_init(&a, "a"),
        gpu.storage_init(&b, "b"),
        gpu.storage(s.m * s.n, "c"),
    );
    let p = LinearParams {
        m: s.m as u32,
        n: s.n as u32,
        k: s.k as u32,
        a_rs: s.k as u32,
        a_cs: 1,
        ldb: ldb as u32,
        ldc: s.n as u32,
        ..Default::default()
    };
    let d = layers::matmul_with(gpu, kernel, tile, p, &ab, &bb, &bb, &cb);
    kernels::submit(gpu, &[&d]);
    let c: Vec<f32> = block_on(gpu.read(&cb, 0, s.m * s.n))?;
    let mut worst: f64 = 0.0;
    for t in 0..256 {
        let (i, j) = ((t * 7919) % s.m, (t * 104729) % s.n);
        let exact: f64 = (0..s.k)
            .map(|p| a[i * s.k + p] as f64 * b[p * ldb + j] as f64)
            .sum();
        worst = worst.max((c[i * s.n + j] as f64 - exact).abs() / (1.0 + exact.abs()));
    }
    if worst > 1e-4 {
        return Err(Error::Gpu(format!(
            "{} {}: result differs from the CPU reference (relative error {worst:.1e})",
            kernel.name, s.name
        )));
    }
    let batch: Vec<&Dispatch> = std::iter::repeat_n(&d, reps).collect();
    let seconds = best_of(5, || {
        kernels::submit(gpu, &batch);
        block_on(gpu.wait())
    })?;
    Ok((2.0 * (s.m * s.n * s.k * reps) as f64 / seconds / 1e9, worst))
}

/// Shortest wall time of `trials` runs of `work`: the machine may be shared, the
/// minimum is the kernel.
fn best_of(trials: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let started = Instant::now();
        work()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// numpy's float32 matmul at 1024³ in GFLOP/s, if python3 and numpy are available.
fn numpy_sgemm() -> Option<f64> {
    let script = "import numpy as np, time\n\
a=np.random.rand(1024,1024).astype(np.float32); b=np.random.rand(1024,1024).astype(np.float32)\n\
a@b\nbest=1e9\nfor _ in range(5):\n t=time.perf_counter(); a@b; best=min(best,time.perf_counter()-t)\n\
print(2*1024**3/best/1e9)";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The default MLP-BN's trainer (one epoch) on `count` synthetic 28×28 training
/// images and 1000 test images, and its rng for more random values.
pub(crate) fn synthetic_trainer(gpu: &Gpu, count: usize) -> Result<(Trainer<'_>, Rng)> {
    let mut rng = Rng::new(3);
    let data = Dataset::from_splits(
        synthetic(count, &mut rng),
        synthetic(1000, &mut rng),
        "synthetic".into(),
        crate::data::Classes::Format(10),
    )?;
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    Ok((
        Trainer::new(gpu, &data, &ModelConfig::default(), config)?,
        rng,
    ))
}

fn synthetic(count: usize, rng: &mut Rng) -> Split {
    let features = 784;
    let labels: Vec<u32> = (0..count).map(|_| rng.below(10) as u32).collect();
    let pixels = (0..count * features)
        .map(|_| rng.below(256) as u8)
        .collect();
    Split {
        pixels,
        labels,
        count,
        shape: crate::nn::model::Shape::image(28, 28, 1),
        labels_file: "synthetic".into(),
        encoding: crate::data::Encoding::U8,
    }
}

/// TWA's projection Pᵀ(Pg) for n = 50 rows of the MLP's D, beside a plain buffer copy
/// of the same size: (projection GB/s, copy GB/s), bytes read + written per second.
fn projection(gpu: &Gpu, k: &Kernels, quick: bool) -> Result<(f64, f64)> {
    let dim = crate::nn::Model::mlp(&ModelConfig::default(), 784, 10).num_params();
    let n = 50;
    let mut rng = Rng::new(5);
    let samples = random(&mut rng, n * dim);
    let space = block_on(crate::twa::Subspace::build(
        gpu,
        k,
        &samples,
        dim,
        crate::twa::Subspace::rows_per_chunk(gpu, dim)?,
    ))?;
    // Validate: the projection of a sample is the sample.
    let g = gpu.storage_init(&samples[..dim], "g");
    let work = space.projection(gpu, k, &g);
    kernels::submit(gpu, &work.iter().collect::<Vec<_>>());
    let back: Vec<f32> = block_on(gpu.read(&g, 0, dim))?;
    let err = back
        .iter()
        .zip(&samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if err > 1e-4 {
        return Err(Error::Gpu(format!(
            "projection: a sample does not project onto itself (error {err:.1e})"
        )));
    }
    let reps = if quick { 2 } else { 20 };
    let batch: Vec<&Dispatch> = (0..reps).flat_map(|_| work.iter()).collect();
    let bytes = (2 * n * dim * 4 + 3 * dim * 4) as f64 * reps as f64;
    let best = best_of(3, || {
        kernels::submit(gpu, &batch);
        block_on(gpu.wait())
    })?;
    let src = gpu.storage(n * dim, "copy src");
    let dst = gpu.storage(n * dim, "copy dst");
    let copy_best = best_of(3, || {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..reps {
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, (n * dim * 4) as u64);
        }
        gpu.queue.submit([encoder.finish()]);
        block_on(gpu.wait())
    })?;
    let copy_bytes = (2 * n * dim * 4) as f64 * reps as f64;
    Ok((bytes / best / 1e9, copy_bytes / copy_best / 1e9))
}

/// Explicit-coefficient TWA's per-step work on the same n = 50 directions of the
/// MLP's D with one coefficient per layer: ∂L/∂β (block dots and their sum) and
/// w = c + Σ β ⊙ d, at each bit width: (bits, milliseconds per step, GB/s of stored
/// directions read — twice a step).
fn explicit_directions(gpu: &Gpu, k: &Kernels, quick: bool) -> Result<Vec<(u32, f64, f64)>> {
    use crate::twa::directions::{self, Directions, Packed, BITS};
    let model = crate::nn::Model::mlp(&ModelConfig::default(), 784, 10);
    let dim = model.num_params();
    let n = 50;
    let mut rng = Rng::new(6);
    let samples = random(&mut rng, n * dim);
    let blocks = directions::blocks(&model.params, true);
    let (centre, dirs, _) = directions::normalised_directions(&samples, dim, &blocks);
    let g = gpu.storage_init(&random(&mut rng, dim), "g");
    let beta = gpu.storage_init(&random(&mut rng, n * blocks.len()), "beta");
    let grad = gpu.storage(n * blocks.len(), "grad beta");
    let w = gpu.storage(dim, "w");
    let reps = if quick { 2 } else { 20 };
    let mut rows = Vec::new();
    for bits in BITS.into_iter().rev() {
        let mut packed = Packed::pack(&dirs, dim, &blocks, bits)?;
        packed.renormalise();
        let space = Directions::upload(gpu, &centre, &packed)?;
        let [dots, sum] = space.gradient(gpu, k, &g, &grad);
        let combine = space.combine(gpu, k, &beta, &w);
        let batch: Vec<&Dispatch> = (0..reps).flat_map(|_| [&dots, &sum, &combine]).collect();
        let best = best_of(3, || {
            kernels::submit(gpu, &batch);
            block_on(gpu.wait())
        })?;
        let per_step = best / reps as f64;
        rows.push((
            bits,
            per_step * 1e3,
            2.0 * space.bytes as f64 / per_step / 1e9,
        ));
    }
    Ok(rows)
}

/// A convolution the models use: input image, output channels, kernel, stride.
struct ConvShape {
    name: &'static str,
    input: (usize, usize, usize),
    outputs: usize,
    kernel: usize,
    stride: usize,
}

const CONV_SHAPES: &[ConvShape] = &[
    ConvShape {
        name: "cnn conv1 28×28×1→32 3×3",
        input: (28, 28, 1),
        outputs: 32,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        name: "cnn conv2 14×14×32→64 3×3",
        input: (14, 14, 32),
        outputs: 64,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        name: "resnet 32×32×16→16 3×3",
        input: (32, 32, 16),
        outputs: 16,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        name: "resnet 16×16×32→32 3×3",
        input: (16, 16, 32),
        outputs: 32,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        name: "resnet 8×8×64→64 3×3",
        input: (8, 8, 64),
        outputs: 64,
        kernel: 3,
        stride: 1,
    },
];

/// Validate one convolution (sampled outputs against a direct CPU sum), then time its
/// forward (im2col + product) and backward (im2col, dW, dcols, col2im) on `batch` images:
/// (forward GFLOP/s, backward GFLOP/s), counting 2·rows·k·outputs per product.
fn conv(gpu: &Gpu, k: &Kernels, s: &ConvShape, batch: usize) -> Result<(f64, f64)> {
    use crate::nn::model::{Layer, LayerKind, Shape as Image, Window};
    let (h, w, c) = s.input;
    let window = Window {
        input: Image::image(h, w, c),
        kernel: (s.kernel, s.kernel),
        stride: s.stride,
        padding: s.kernel / 2,
    };
    let (oh, ow) = window.out_hw();
    let layer = Layer {
        kind: LayerKind::Conv {
            window,
            outputs: s.outputs,
            bias: false,
        },
        input: 0,
        output: Image::image(oh, ow, s.outputs),
        param_off: 0,
        state_off: 0,
    };
    let (rows, cols) = layers::im2col_shape(batch, &window);
    let mut rng = Rng::new(13);
    let x = random(&mut rng, batch * h * w * c);
    let weights = random(&mut rng, s.outputs * cols);
    let storage = |len: usize, name| gpu.storage(len, name);
    let (xb, yb, dyb, dxb) = (
        gpu.storage_init(&x, "x"),
        storage(rows * s.outputs, "y"),
        gpu.storage_init(&random(&mut rng, rows * s.outputs), "dy"),
        storage(batch * h * w * c, "dx"),
    );
    let (params, grads, one) = (
        gpu.storage_init(&weights, "w"),
        storage(weights.len(), "dw"),
        storage(1, "unused"),
    );
    let (wt, colsb, dcols) = (
        storage(layers::transposed_len(&layer).unwrap_or(1), "wt"),
        storage(rows * layers::padded(cols), "cols"),
        storage(rows * layers::padded(cols), "dcols"),
    );
    let split = storage(layers::split_k_len(&layer, batch).max(1), "split-K slices");
    let step = gpu.uniform(&crate::nn::StepState::default(), "step");
    let bufs = layers::LayerBuffers {
        params: (&params).into(),
        grads: (&grads).into(),
        base: 0,
        state: &one,
        step: &step,
        unused: &one,
        partials: &one,
        cols: &colsb,
        dcols: &dcols,
        cols_len: rows * layers::padded(cols),
        split: &split,
        row_stats: &one,
    };
    let mode = layers::Mode::Train;
    let forward = layers::forward(
        gpu,
        k,
        &layer,
        batch,
        mode,
        &xb,
        None,
        &yb,
        Some(&wt),
        &bufs,
    );
    let backward = layers::backward(gpu, k, &layer, batch, &xb, &yb, &dyb, Some(&dxb), &bufs);
    kernels::submit(gpu, &forward.iter().collect::<Vec<_>>());
    let y: Vec<f32> = block_on(gpu.read(&yb, 0, rows * s.outputs))?;
    for t in 0..64 {
        let (row, o) = ((t * 7919) % rows, (t * 104729) % s.outputs);
        let (b, pix) = (row / (oh * ow), row % (oh * ow));
        let (oy, ox) = (pix / ow, pix % ow);
        let mut exact = 0.0f64;
        for ci in 0..c {
            for ky in 0..s.kernel {
                for kx in 0..s.kernel {
                    let iy = (oy * s.stride + ky) as isize - window.padding as isize;
                    let ix = (ox * s.stride + kx) as isize - window.padding as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        let xv = x[((b * h + iy as usize) * w + ix as usize) * c + ci];
                        let wv = weights[o * cols + (ci * s.kernel + ky) * s.kernel + kx];
                        exact += xv as f64 * wv as f64;
                    }
                }
            }
        }
        let err = (y[row * s.outputs + o] as f64 - exact).abs() / (1.0 + exact.abs());
        if err > 1e-4 {
            return Err(Error::Gpu(format!(
                "convolution {}: result differs from the CPU reference (relative error {err:.1e})",
                s.name
            )));
        }
    }
    let flops = 2.0 * (rows * cols * s.outputs) as f64;
    let time = |work: &[Dispatch]| {
        let refs: Vec<&Dispatch> = work.iter().collect();
        best_of(3, || {
            kernels::submit(gpu, &refs);
            block_on(gpu.wait())
        })
    };
    Ok((
        flops / time(&forward)? / 1e9,
        2.0 * flops / time(&backward)? / 1e9,
    ))
}

/// Seconds of each dispatch on the device, from timestamp queries around a pass of
/// `reps` launches of it (the best of three), or `None` where the adapter has none.
fn gpu_times(gpu: &Gpu, dispatches: &[Dispatch], reps: usize) -> Result<Option<Vec<f64>>> {
    if !gpu
        .device
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        return Ok(None);
    }
    let count = 2 * dispatches.len() as u32;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel times"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("kernel times"),
        size: 8 * count as u64,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("kernel times staging"),
        size: 8 * count as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
    let mut best = vec![f64::INFINITY; dispatches.len()];
    for _ in 0..3 {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for (i, d) in dispatches.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            (0..reps).for_each(|_| d.record(&mut pass));
        }
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, 8 * count as u64);
        gpu.queue.submit([encoder.finish()]);
        let mut ticks = vec![0u64; count as usize];
        block_on(gpu.read_staging(&staging, &mut ticks))?;
        for (b, pair) in best.iter_mut().zip(ticks.chunks(2)) {
            let seconds = pair[1].saturating_sub(pair[0]) as f64 * period / reps as f64;
            *b = b.min(seconds);
        }
    }
    Ok(Some(best))
}

/// The models' display names.
fn title(arch: Arch) -> &'static str {
    match arch {
        Arch::Mlp => "MLP-BN 784-256-256-10",
        Arch::Cnn => "cnn",
        Arch::Resnet => "resnet",
        Arch::Layers => "layers",
    }
}

/// `arch` (Fashion-MNIST shapes) with its initial weights, prepared for batch 128 of
/// random images: (network, initial weights).
fn bench_network(gpu: &Gpu, arch: Arch) -> Result<(crate::nn::Network, Vec<f32>)> {
    let config = ModelConfig {
        arch,
        ..ModelConfig::default()
    };
    let model = crate::nn::Model::build(&config, crate::nn::model::Shape::image(28, 28, 1), 10)?;
    prepared_network(gpu, model)
}

/// `model` with its initial weights, prepared for batch 128 of random inputs and
/// labels: (network, initial weights).
fn prepared_network(gpu: &Gpu, model: crate::nn::Model) -> Result<(crate::nn::Network, Vec<f32>)> {
    let init = model.init_params(1);
    let (input, classes) = (model.input.len(), model.classes);
    let batch = 128;
    let mut net = crate::nn::Network::new(
        gpu,
        model,
        batch,
        &init,
        crate::nn::SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-4,
        },
    )?;
    net.prepare(gpu, batch);
    let mut rng = Rng::new(11);
    gpu.write(&net.acts[0], 0, &random(&mut rng, batch * input));
    let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
    gpu.write(&net.labels, 0, &labels);
    Ok((net, init))
}

/// The paper's networks for `twa bench --networks`: preset, input side, classes.
const NETWORKS: [(&str, usize, usize); 3] = [
    ("vgg16-bn", 32, 10),
    ("resnet-18", 32, 10),
    ("vit", 32, 100),
];

/// A training step (forward, loss, backward, SGD update; one command encoder) of each
/// of the paper's networks at batch 128 of random 32×32 colour images: wall clock, the
/// best of three steps after one to warm up. Prints ms per step and images/s; with
/// `json`, also one JSON object, the last line of stdout.
pub fn networks(gpu: &Gpu, json: bool) -> Result<()> {
    println!("adapter: {}", gpu.describe());
    let mut report = serde_json::Map::new();
    report.insert("adapter".into(), gpu.describe().into());
    for (name, ms) in network_steps(gpu)? {
        report.insert(
            name.into(),
            serde_json::json!({ "batch": 128, "step_ms": ms, "images_per_s": 128e3 / ms }),
        );
    }
    if json {
        println!("{}", serde_json::Value::Object(report));
    }
    Ok(())
}

/// (preset, ms per step) of [`NETWORKS`], printed as they are measured.
fn network_steps(gpu: &Gpu) -> Result<Vec<(&'static str, f64)>> {
    println!(
        "{:<30} {:>12} {:>10}",
        "training step, batch 128, 32×32×3", "ms", "images/s"
    );
    let mut out = Vec::new();
    for (name, side, classes) in NETWORKS {
        let config = crate::run::config::RunConfig::preset(name)?;
        let input = crate::nn::model::Shape::image(side, side, 3);
        let model = crate::nn::Model::build(&config.model, input, classes)?;
        let (net, _) = prepared_network(gpu, model)?;
        let step = || {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                net.record_train_step(&mut pass, 128, &crate::nn::GradientStep::Sgd(Vec::new()));
            }
            gpu.queue.submit([encoder.finish()]);
            block_on(gpu.wait())
        };
        step()?;
        let ms = best_of(3, step)? * 1e3;
        println!("{name:<30} {ms:>12.1} {:>10.1}", 128e3 / ms);
        out.push((name, ms));
    }
    Ok(out)
}

/// Time every dispatch of one training step of `arch` (batch 128, Fashion-MNIST
/// shapes) alone, and print the time per kernel and the step's total.
fn profile_step(gpu: &Gpu, arch: Arch, quick: bool) -> Result<serde_json::Value> {
    let title = title(arch);
    let batch = 128;
    let (net, _) = bench_network(gpu, arch)?;
    let reps = if quick { 1 } else { 5 };
    let dispatches = net.train_dispatches(batch);
    let timed = match gpu_times(gpu, dispatches, reps)? {
        Some(times) => ("gpu timestamps", times),
        None => {
            let mut times = Vec::new();
            for d in dispatches {
                let seconds = best_of(3, || {
                    kernels::submit(gpu, &vec![d; reps]);
                    block_on(gpu.wait())
                })?;
                times.push(seconds / reps as f64);
            }
            ("wall", times)
        }
    };
    let (clock, times) = timed;
    let mut by_kernel: Vec<(&'static str, f64, usize)> = Vec::new();
    let mut total = 0.0;
    for (d, &seconds) in dispatches.iter().zip(&times) {
        total += seconds;
        match by_kernel.iter_mut().find(|(n, _, _)| *n == d.name) {
            Some(entry) => {
                entry.1 += seconds;
                entry.2 += 1;
            }
            None => by_kernel.push((d.name, seconds, 1)),
        }
    }
    by_kernel.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "{title} training step, batch 128 (each dispatch timed alone, {clock}): {:.1} ms",
        total * 1e3
    );
    println!(
        "{:<24} {:>8} {:>10} {:>8}",
        "kernel", "launches", "ms", "share"
    );
    for (name, seconds, count) in &by_kernel {
        println!(
            "{name:<24} {count:>8} {:>10.2} {:>7.1}%",
            seconds * 1e3,
            100.0 * seconds / total
        );
    }
    Ok(serde_json::json!({
        "clock": clock,
        "step_ms": total * 1e3,
        "kernels": by_kernel
            .iter()
            .map(|(name, seconds, count)| serde_json::json!({ "kernel": name, "launches": count, "ms": seconds * 1e3 }))
            .collect::<Vec<_>>(),
    }))
}

/// A projected TWA step (n = 51 samples around the initial weights, as the head
/// presets keep) against a plain SGD step of `arch`, wall clock, in alternating rounds
/// of a few steps each (so that a change of the host's speed hits both alike):
/// (SGD ms, TWA ms), the medians over the rounds.
fn twa_step_cost(gpu: &Gpu, arch: Arch, quick: bool) -> Result<(f64, f64)> {
    let (net, init) = bench_network(gpu, arch)?;
    let dim = init.len();
    let n = 51;
    let mut rng = Rng::new(13);
    let samples: Vec<f32> = (0..n)
        .flat_map(|_| {
            let noise = random(&mut rng, dim);
            init.iter()
                .zip(noise)
                .map(|(w, e)| w + 0.01 * e)
                .collect::<Vec<_>>()
        })
        .collect();
    let k = &net.kernels;
    let rows = crate::twa::Subspace::rows_per_chunk(gpu, dim)?;
    let space = block_on(crate::twa::Subspace::build(gpu, k, &samples, dim, rows))?;
    let twa = space.projected_sgd(gpu, k, &net.grads);
    let sgd = GradientStep::Sgd(Vec::new());
    let (rounds, steps) = match (quick, arch) {
        (true, Arch::Mlp) => (5, 5),
        (true, _) => (3, 2),
        (false, Arch::Mlp) => (9, 20),
        (false, _) => (7, 5),
    };
    let batch = 128;
    let time = |update: &GradientStep| -> Result<f64> {
        let started = Instant::now();
        for _ in 0..steps {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                net.record_train_step(&mut pass, batch, update);
            }
            gpu.queue.submit([encoder.finish()]);
        }
        block_on(gpu.wait())?;
        Ok(started.elapsed().as_secs_f64() * 1e3 / steps as f64)
    };
    time(&sgd)?;
    time(&twa)?;
    let (mut sgd_ms, mut twa_ms) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        sgd_ms.push(time(&sgd)?);
        twa_ms.push(time(&twa)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(sgd_ms), median(twa_ms)))
}

/// Run the benchmark and print its table: the short profile (a minute or two on a
/// software rasteriser), or with `full` more repetitions and the training batch for
/// the convolutions. With `json`, also every figure as one JSON object, the last line
/// of stdout.
pub fn profile(gpu: &Gpu, full: bool, json: bool) -> Result<()> {
    let quick = !full;
    let bench_started = Instant::now();
    let mut report = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        report.insert(key.into(), value);
    };
    put("adapter", gpu.describe().into());
    put("profile", if full { "full" } else { "short" }.into());
    println!("adapter: {}", gpu.describe());
    let k = Kernels::new(gpu);
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "GEMM (GFLOP/s)", "lanes", "vec4", "tiled", "subgroup", "max rel err"
    );
    let mut square = 0.0;
    for s in SHAPES {
        let flops = 2.0 * (s.m * s.n * s.k) as f64;
        let reps = if quick {
            2
        } else {
            ((2e10 / flops) as usize).clamp(3, 200)
        };
        let (lanes, err_lanes) = gemm(gpu, &k.matmul, layers::MATMUL_TILE, s, reps)?;
        let (vec4, err_vec4) = gemm(gpu, &k.matmul_vec4, layers::MATMUL_VEC4_TILE, s, reps)?;
        let (tiled, err_tiled) = gemm(gpu, &k.matmul_tiled, layers::MATMUL_TILED_TILE, s, reps)?;
        let (subgroup, err_subgroup) = match &k.matmul_subgroup {
            Some(sg) => gemm(gpu, sg, layers::matmul_subgroup_tile(gpu), s, reps)?,
            None => (f64::NAN, 0.0),
        };
        let worst = err_lanes.max(err_vec4).max(err_tiled).max(err_subgroup);
        println!(
            "{:<30} {lanes:>10.2} {vec4:>10.2} {tiled:>10.2} {subgroup:>10.2} {worst:>12.1e}",
            s.name
        );
        put(
            &format!("gemm {}", s.name),
            serde_json::json!({ "lanes": lanes, "vec4": vec4, "tiled": tiled, "subgroup": finite(subgroup), "max_rel_err": worst }),
        );
        if s.m == 1024 {
            square = match &k.matmul_subgroup {
                _ if k.prefer_tiled => tiled,
                Some(_) => subgroup,
                None => vec4,
            };
        }
    }
    let numpy = numpy_sgemm();
    put("gemm 1024 GFLOP/s", square.into());
    put("numpy sgemm 1024 GFLOP/s", numpy.into());
    match numpy {
        Some(np) => println!(
            "numpy sgemm 1024³: {np:.1} GFLOP/s; twa (variant used on this adapter) / numpy = {:.3}",
            square / np
        ),
        None => println!("numpy sgemm 1024³: not measured (python3 with numpy not found)"),
    }
    let batch = if quick { 16 } else { 128 };
    println!(
        "{:<30} {:>10} {:>10}",
        format!("convolution, batch {batch}"),
        "fwd GFLOP/s",
        "bwd GFLOP/s"
    );
    for s in CONV_SHAPES {
        let (fwd, bwd) = conv(gpu, &k, s, batch)?;
        println!("{:<30} {fwd:>11.2} {bwd:>11.2}", s.name);
        put(
            &format!("conv {}", s.name),
            serde_json::json!({ "batch": batch, "forward_gflops": fwd, "backward_gflops": bwd }),
        );
    }
    if full {
        for (name, ms) in network_steps(gpu)? {
            put(
                &format!("{name} step"),
                serde_json::json!({ "batch": 128, "step_ms": ms, "images_per_s": 128e3 / ms }),
            );
        }
    }
    put("mlp step profile", profile_step(gpu, Arch::Mlp, quick)?);
    put("cnn step profile", profile_step(gpu, Arch::Cnn, quick)?);
    for (arch, key) in [(Arch::Mlp, "mlp twa step"), (Arch::Cnn, "cnn twa step")] {
        let (sgd, twa) = twa_step_cost(gpu, arch, quick)?;
        println!(
            "{} step, batch 128 (wall clock, medians of alternating rounds): SGD {sgd:.1} ms, projected TWA (n = 51) {twa:.1} ms, ratio {:.2}",
            title(arch),
            twa / sgd
        );
        put(
            key,
            serde_json::json!({ "n": 51, "sgd_ms": sgd, "twa_ms": twa, "ratio": twa / sgd }),
        );
    }
    let (proj, copy) = projection(gpu, &k, quick)?;
    put(
        "twa projection",
        serde_json::json!({ "n": 50, "dim": 270346, "gbs": proj, "copy_gbs": copy, "ratio": proj / copy }),
    );
    println!(
        "TWA projection Pᵀ(Pg), n = 50, D = 270346: {proj:.2} GB/s; buffer copy of P: {copy:.2} GB/s; ratio {:.2}",
        proj / copy
    );
    println!("explicit TWA step (∂L/∂β + w = c + Σβ⊙d), n = 50, per-layer coefficients:");
    for (bits, ms, gbs) in explicit_directions(gpu, &k, quick)? {
        println!(
            "  {bits:>2}-bit directions: {ms:>7.2} ms a step, {gbs:>6.2} GB/s of stored directions"
        );
        put(
            &format!("explicit twa step {bits}-bit"),
            serde_json::json!({ "ms": ms, "gbs": gbs }),
        );
    }
    let count = if quick { 1024 } else { 8192 };
    let (mut trainer, _) = synthetic_trainer(gpu, count)?;
    block_on(trainer.train_epoch(0, &mut |_| {}))?; // warm-up: first-use costs
    let started = Instant::now();
    block_on(trainer.train_epoch(0, &mut |_| {}))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "training MLP-BN 784-256-256-10, batch 128: {:.0} samples/s ({count} samples in {seconds:.2}s)",
        count as f64 / seconds
    );
    put("training samples/s", (count as f64 / seconds).into());
    let total = bench_started.elapsed().as_secs_f64();
    put("seconds", total.into());
    println!("benchmark took {total:.1} s");
    if json {
        println!("{}", serde_json::Value::Object(report));
    }
    Ok(())
}

/// A figure for JSON: NaN (not measured) as null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
