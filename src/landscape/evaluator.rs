//! Loss over a plane on the device. The plane's origin and directions are expanded
//! once into weight space (C = Pᵀ·origin, U = Pᵀ·u, V = Pᵀ·v, three [`Rows`]; over
//! b-bit directions, see [`Basis`]); each grid point is then one combination
//! (w = C + x·U + y·V) and one forward
//! pass over a fixed batch with BatchNorm using that batch's statistics, its totals
//! copied into a results buffer. One submit per point, one readback per chunk.
//!
//! The first layer (a Linear or Conv) is linear in its parameters, so its output at
//! C + x·U + y·V is out(C) + x·out(U) + y·out(V): those three are computed once per
//! batch and each point only combines them, which skips the widest matrix product.

use super::basis::Basis;
use super::grid::{Grid, GridSpec};
use super::plane::{Anchors, Plane};
use crate::collective::Collective;
use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::kernels::submit;
use crate::gpu::{Dispatch, Gpu};
use crate::nn::model::LayerKind;
use crate::nn::{ModelConfig, Network, Totals};
use crate::train::{Part, TrainConfig, Trainer};
use crate::twa::rows::{Rows, Segments};

/// Points evaluated between two readbacks (and progress reports).
const CHUNK: usize = 48;

/// The first layer's outputs on the loaded batch at C, U and V, and the dispatches
/// that combine them into `acts[1]` for the current point.
struct FirstLayer {
    _outputs: Rows,
    combine: Vec<Dispatch>,
}

/// A model, its data and the samples' subspace on one device, ready to evaluate planes.
pub struct Landscape<'a> {
    pub trainer: Trainer<'a>,
    pub space: Basis,
    /// Seed of the fixed batches' order.
    pub seed: u64,
    /// Whether a plane was set.
    has_plane: bool,
    /// C, U, V.
    plane_rows: Rows,
    scratch: wgpu::Buffer,
    /// [1, x, y, 0]: the coefficients of the current point.
    point: wgpu::Buffer,
    to_params: Vec<Dispatch>,
}

impl<'a> Landscape<'a> {
    /// Build the subspace of `samples` (n × D) for `model` on `data`, stored at `bits`
    /// bits (32: the orthonormal basis; 1, 2, 4, 8: quantised directions); fixed
    /// batches hold `batch` samples.
    pub async fn new(
        gpu: &'a Gpu,
        data: &Dataset,
        model: &ModelConfig,
        samples: &[f32],
        bits: u32,
        batch: usize,
        seed: u64,
    ) -> Result<Landscape<'a>> {
        let config = TrainConfig {
            epochs: 1,
            batch,
            eval_batch: batch,
            seed,
            ..TrainConfig::default()
        };
        let trainer = Trainer::new(gpu, data, model, config)?;
        let dim = trainer.net.model.num_params();
        let k = &trainer.net.kernels;
        let space = Basis::build(gpu, k, samples, dim, bits).await?;
        // In use from the start: set_plane fills them.
        let plane_rows = Rows::new(gpu, 3, Segments::of(gpu, dim), 3, "plane rows")?.all_in_use();
        let scratch = gpu.storage(dim, "landscape scratch");
        let point = gpu.storage(4, "plane point");
        let to_params = plane_rows.combine(gpu, k, (&point, 0), &trainer.net.params, 0.0, 1.0);
        Ok(Landscape {
            scratch,
            trainer,
            space,
            seed,
            has_plane: false,
            plane_rows,
            point,
            to_params,
        })
    }

    fn gpu(&self) -> &'a Gpu {
        self.trainer.gpu
    }

    /// The samples' coordinates, the SWA point and `twa` (coordinates) as plane anchors.
    pub fn anchors(&self, twa: Option<Vec<f64>>) -> Anchors {
        Anchors::new(self.space.sample_coordinates(), twa)
    }

    /// Subspace coordinates of a weight vector (its projection onto the span).
    pub async fn coordinates_of(&self, params: &[f32]) -> Result<Vec<f64>> {
        self.gpu().write(&self.scratch, 0, params);
        self.space
            .coordinates(self.gpu(), &self.trainer.net.kernels, &self.scratch)
            .await
    }

    /// Make `plane` the current one: expand its origin and directions on the device.
    pub async fn set_plane(&mut self, plane: &Plane) -> Result<()> {
        let gpu = self.gpu();
        for (row, beta) in [&plane.origin, &plane.u, &plane.v].into_iter().enumerate() {
            let k = &self.trainer.net.kernels;
            self.space
                .expand(gpu, k, beta, row == 0, &self.scratch)
                .await?;
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            self.plane_rows.copy_in(&mut encoder, row, &self.scratch);
            gpu.queue.submit([encoder.finish()]);
        }
        gpu.wait().await?;
        self.has_plane = true;
        Ok(())
    }

    /// The first layer at C, U and V on the loaded batch, if it is a Linear or Conv
    /// (linear in its parameters).
    fn first_layer(&self, batch: usize) -> Option<FirstLayer> {
        let gpu = self.gpu();
        let net = &self.trainer.net;
        let layer = net.model.layers.first()?;
        if !matches!(
            layer.kind,
            LayerKind::Linear { .. } | LayerKind::Conv { .. }
        ) {
            return None;
        }
        let len = batch * layer.outputs();
        let segments = Segments::of(gpu, len);
        let mut rows = Rows::new(gpu, 3, segments, 3, "first layer at C, U, V").ok()?;
        for k in 0..3 {
            let mut unit = [0.0f32; 4];
            unit[k] = 1.0;
            gpu.write(&self.point, 0, &unit);
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.to_params.iter().for_each(|d| d.record(&mut pass));
                net.record_probe_first(&mut pass, batch);
            }
            rows.copy_in(&mut encoder, k, &net.acts[1]);
            gpu.queue.submit([encoder.finish()]);
        }
        let point = (&self.point, 0);
        let combine = rows.combine(gpu, &net.kernels, point, &net.acts[1], 0.0, 1.0);
        Some(FirstLayer {
            _outputs: rows,
            combine,
        })
    }

    /// Submit the evaluation of point (x, y) on the loaded batch, its totals copied to
    /// `results[slot]` (4 words).
    fn submit_point(
        &self,
        (x, y): (f64, f64),
        batch: usize,
        first: Option<&FirstLayer>,
        results: &wgpu::Buffer,
        slot: usize,
    ) {
        let gpu = self.gpu();
        let net = &self.trainer.net;
        gpu.write(&self.point, 0, &[1.0f32, x as f32, y as f32, 0.0]);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.to_params.iter().for_each(|d| d.record(&mut pass));
            match first {
                Some(f) => {
                    f.combine.iter().for_each(|d| d.record(&mut pass));
                    net.record_probe_rest(&mut pass, batch);
                }
                None => net.record_probe(&mut pass, batch),
            }
        }
        let totals = net.totals_buffer(false);
        encoder.copy_buffer_to_buffer(totals, 0, results, (slot * 16) as u64, 16);
        encoder.clear_buffer(totals, 0, None);
        gpu.queue.submit([encoder.finish()]);
    }

    /// Load the fixed batch of `part` and clear the totals; returns the batch size.
    fn load_batch(&mut self, part: Part) -> usize {
        let size = self.trainer.load_fixed_batch(part, self.seed);
        self.trainer.net.reset_totals(self.gpu(), false);
        size
    }

    /// Evaluate the current plane on `spec`, coarse to fine, on the fixed batch of
    /// `part`. `progress` sees the grid after every chunk of points and returns false
    /// to stop early (the partial grid is returned). With the ranks of `collective`
    /// the points are shared out and their values summed after every chunk (then
    /// `progress` must answer alike on every rank).
    pub async fn evaluate(
        &mut self,
        spec: &GridSpec,
        part: Part,
        collective: &dyn Collective,
        progress: &mut dyn FnMut(&Grid) -> bool,
    ) -> Result<Grid> {
        assert!(self.has_plane, "set_plane before evaluate");
        let gpu = self.gpu();
        let batch = self.load_batch(part);
        let first = self.first_layer(batch);
        let n = spec.n;
        let results = gpu.storage(n * n * 4, "landscape results");
        let mut grid = Grid::new(spec.clone());
        let mut coarser = None;
        for stride in spec.strides() {
            let points = spec.level_points(stride, coarser);
            for chunk in points.chunks(CHUNK) {
                // With several ranks each evaluates every R-th point of the chunk.
                let (rank, ranks) = (collective.rank(), collective.size());
                let mine = || chunk.iter().skip(rank).step_by(ranks);
                for &(i, j) in mine() {
                    let [x, y] = spec.coord(i, j);
                    self.submit_point((x, y), batch, first.as_ref(), &results, j * n + i);
                }
                let words: Vec<f32> = gpu.read(&results, 0, n * n * 4).await?;
                // (loss, accuracy) of each point of the chunk, 0 where another rank has it.
                let mut values = vec![0.0f64; 2 * chunk.len()];
                for (m, &(i, j)) in chunk.iter().enumerate().skip(rank).step_by(ranks) {
                    let k = j * n + i;
                    let totals = Network::decode_totals(&words[4 * k..4 * k + 4]);
                    values[2 * m] = totals.mean_loss();
                    values[2 * m + 1] = totals.accuracy();
                }
                collective.sum(&mut values);
                for (m, &(i, j)) in chunk.iter().enumerate() {
                    let k = j * n + i;
                    let loss = values[2 * m] as f32;
                    grid.loss[k] = if loss.is_finite() {
                        loss
                    } else {
                        f32::INFINITY
                    };
                    grid.acc[k] = values[2 * m + 1] as f32;
                }
                if chunk.len() == CHUNK && !progress(&grid) {
                    return Ok(grid);
                }
            }
            grid.stride = stride;
            coarser = Some(stride);
            if !progress(&grid) {
                break;
            }
        }
        Ok(grid)
    }

    /// (mean loss, accuracy) at plane point (x, y) on the fixed batch of `part`, as
    /// one grid point is evaluated.
    pub async fn evaluate_point(&mut self, part: Part, x: f64, y: f64) -> Result<(f32, f32)> {
        let batch = self.load_batch(part);
        let first = self.first_layer(batch);
        let results = self.gpu().storage(4, "point result");
        self.submit_point((x, y), batch, first.as_ref(), &results, 0);
        let totals = Network::decode_totals(&self.gpu().read(&results, 0, 4).await?);
        Ok((totals.mean_loss() as f32, totals.accuracy() as f32))
    }

    /// The model at plane point (x, y) on the whole test split, after re-estimating
    /// BatchNorm's running statistics on the training split (as SWA and TWA are).
    pub async fn evaluate_model(&mut self, x: f64, y: f64) -> Result<Totals> {
        let gpu = self.gpu();
        gpu.write(&self.point, 0, &[1.0f32, x as f32, y as f32, 0.0]);
        submit(gpu, &self.to_params.iter().collect::<Vec<_>>());
        self.trainer.recalibrate_bn().await?;
        self.trainer.evaluate().await
    }
}
