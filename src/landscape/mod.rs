//! The loss landscape of the coefficient space: a plane through the samples' span
//! ([`plane`]), a grid over it evaluated coarse to fine on the device ([`evaluator`],
//! [`grid`]), and its pictures ([`render`]). Shared by `twa landscape` and the app.

pub mod basis;
pub mod evaluator;
pub mod grid;
pub mod plane;
pub mod render;

pub use basis::Basis;
pub use evaluator::Landscape;
pub use grid::{Grid, GridSpec, Metric};
pub use plane::{Anchors, Plane, PlaneKind};
pub use render::{ColorScale, Labels, Overlay};

/// Plane coordinates of everything drawn over a landscape: the samples, SWA and TWA.
pub fn overlay(plane: &Plane, anchors: &Anchors) -> Overlay {
    Overlay {
        samples: anchors.samples.iter().map(|s| plane.project(s)).collect(),
        swa: Some(plane.project(&anchors.swa)),
        twa: anchors.twa.as_ref().map(|t| plane.project(t)),
        ..Overlay::default()
    }
}

/// The grid spec that shows every point of `overlay` with a margin, its shorter side
/// at least 3/4 of the longer (pictures at equal scales fill a roughly square panel).
pub fn grid_around(overlay: &Overlay, n: usize) -> GridSpec {
    let mut points = overlay.samples.clone();
    points.extend(overlay.swa);
    points.extend(overlay.twa);
    points.extend(&overlay.trajectory);
    GridSpec::around(&points, n, 0.25).with_aspect(0.75)
}

/// The title and axis labels of a figure of `metric` over a plane of `kind`, evaluated
/// on an n × n grid with fixed batches of `batch` samples, over a `bits`-bit basis.
pub fn labels(kind: PlaneKind, metric: Metric, n: usize, batch: usize, bits: u32) -> Labels {
    let (x, y) = match kind {
        PlaneKind::SwaTwaLast => ("along TWA − SWA", "towards the last sample"),
        PlaneKind::Pca => ("1st principal direction", "2nd principal direction"),
    };
    let plane = match kind {
        PlaneKind::SwaTwaLast => "SWA · TWA · last-sample plane",
        PlaneKind::Pca => "samples' principal plane",
    };
    let basis = if bits < 32 {
        format!(", {bits}-bit directions")
    } else {
        String::new()
    };
    Labels {
        title: format!(
            "{} over the {plane} ({n}² grid, batches of {batch}{basis})",
            metric.label()
        ),
        x: format!("{x} (distance in weight space)"),
        y: format!("{y} (distance in weight space)"),
    }
}
