//! The landscape worker: a task with its own device ([`crate::spawn`]) that builds the samples'
//! subspace and evaluates planes coarse to fine, sending each refinement back. A newer
//! request cancels the grid being computed (checked after every chunk of points).

use crate::spawn::{next, open_gpu, spawn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use twa::data::Dataset;
use twa::landscape::{self, Anchors, Grid, Landscape, Metric, Overlay, Plane, PlaneKind};
use twa::nn::ModelConfig;
use twa::train::SharedSamples;
use web_time::Instant;

/// Work for the landscape worker.
pub enum Request {
    /// Build the subspace of new samples (replaces the previous one).
    Load {
        data: Arc<Dataset>,
        model: ModelConfig,
        samples: SharedSamples,
        seed: u64,
    },
    /// Evaluate a plane.
    Compute(Compute),
    /// Evaluate the model at a plane point (BatchNorm re-estimated, whole test split).
    Evaluate { x: f64, y: f64 },
}

/// A plane to evaluate; `generation` identifies the request (see
/// [`Worker::next_generation`]).
pub struct Compute {
    pub generation: u64,
    pub plane: PlaneKind,
    /// TWA's point as averaging coefficients, if known.
    pub twa: Option<Vec<f64>>,
    pub metric: Metric,
    pub grid: usize,
    /// TWA's path so far (averaging coefficients), kept inside the grid.
    pub trajectory: Vec<Vec<f64>>,
}

/// A landscape as far as it is computed.
#[derive(Clone)]
pub struct View {
    pub generation: u64,
    pub plane: Plane,
    pub anchors: Anchors,
    pub overlay: Overlay,
    pub grid: Grid,
    pub metric: Metric,
    /// Seconds since the request.
    pub seconds: f64,
    /// Why the plane differs from the one asked for, if it does.
    pub note: Option<String>,
}

/// What the landscape worker reports.
pub enum Reply {
    Adapter(String),
    /// The subspace is built.
    Ready {
        rank: usize,
        seconds: f64,
    },
    View(Box<View>),
    Point {
        x: f64,
        y: f64,
        loss: f64,
        acc: f64,
    },
    Failed(String),
}

/// Handle to the landscape worker.
pub struct Worker {
    pub requests: Sender<Request>,
    pub replies: Receiver<Reply>,
    latest: Arc<AtomicU64>,
}

/// Fixed-batch size for grid points.
pub const BATCH: usize = 256;

impl Worker {
    /// Start the thread; `wake` is called after each reply.
    pub fn start(wake: impl Fn() + Send + 'static) -> Worker {
        let (req_tx, req_rx) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let latest = Arc::new(AtomicU64::new(0));
        let current = latest.clone();
        // Ends by itself when the app (the requests' sender) goes.
        let _task = spawn("twa-landscape", move || async move {
            let send = |r: Reply| {
                let _ = tx.send(r);
                wake();
            };
            serve(&req_rx, &current, &send).await;
        });
        Worker {
            requests: req_tx,
            replies: rx,
            latest,
        }
    }

    /// A new generation number; computations of older ones stop.
    pub fn next_generation(&self) -> u64 {
        self.latest.fetch_add(1, Ordering::SeqCst) + 1
    }
}

async fn serve(requests: &Receiver<Request>, latest: &AtomicU64, send: &dyn Fn(Reply)) {
    let gpu = match open_gpu() {
        Ok(gpu) => gpu,
        Err(e) => {
            send(Reply::Failed(e.to_string()));
            return;
        }
    };
    send(Reply::Adapter(gpu.describe()));
    let mut land: Option<Landscape> = None;
    while let Some(request) = next(requests).await {
        let result = match request {
            Request::Load {
                data,
                model,
                samples,
                seed,
            } => {
                let started = Instant::now();
                land = None;
                Landscape::new(&gpu, &data, &model, &samples.samples, 32, BATCH, seed)
                    .await
                    .map(|l| {
                        send(Reply::Ready {
                            rank: l.space.rank(),
                            seconds: started.elapsed().as_secs_f64(),
                        });
                        land = Some(l);
                    })
            }
            Request::Compute(c) => match land.as_mut() {
                Some(l) => compute(l, c, latest, send).await,
                None => Ok(()),
            },
            Request::Evaluate { x, y } => match land.as_mut() {
                Some(l) => l.evaluate_model(x, y).await.map(|t| {
                    send(Reply::Point {
                        x,
                        y,
                        loss: t.mean_loss(),
                        acc: t.accuracy(),
                    })
                }),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            send(Reply::Failed(e.to_string()));
        }
    }
}

async fn compute(
    land: &mut Landscape<'_>,
    request: Compute,
    latest: &AtomicU64,
    send: &dyn Fn(Reply),
) -> twa::error::Result<()> {
    let Compute {
        generation,
        plane: kind,
        twa,
        metric,
        grid,
        trajectory,
    } = request;
    let started = Instant::now();
    let bare = land.anchors(None);
    let anchors = land.anchors(twa.map(|a| bare.combine(&a)));
    let (plane, note) = match Plane::build(kind, &anchors) {
        Ok(p) => (p, None),
        Err(e) if kind == PlaneKind::SwaTwaLast => (
            Plane::build(PlaneKind::Pca, &anchors)?,
            Some(format!("{e} — showing the PCA plane until TWA moves")),
        ),
        Err(e) => return Err(e),
    };
    land.set_plane(&plane).await?;
    let mut overlay = landscape::overlay(&plane, &anchors);
    overlay.trajectory = trajectory
        .iter()
        .map(|a| plane.project(&anchors.combine(a)))
        .collect();
    let spec = landscape::grid_around(&overlay, grid);
    land.evaluate(&spec, metric.part(), &twa::collective::Single, &mut |g| {
        send(Reply::View(Box::new(View {
            generation,
            plane: plane.clone(),
            anchors: anchors.clone(),
            overlay: overlay.clone(),
            grid: g.clone(),
            metric,
            seconds: started.elapsed().as_secs_f64(),
            note: note.clone(),
        })));
        latest.load(Ordering::SeqCst) == generation
    })
    .await?;
    Ok(())
}
