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
pub use render::{ColorScale, Overlay};

/// Plane coordinates of everything drawn over a landscape: the samples, SWA and TWA.
pub fn overlay(plane: &Plane, anchors: &Anchors) -> Overlay {
    Overlay {
        samples: anchors.samples.iter().map(|s| plane.project(s)).collect(),
        swa: Some(plane.project(&anchors.swa)),
        twa: anchors.twa.as_ref().map(|t| plane.project(t)),
        ..Overlay::default()
    }
}

/// The grid spec that shows every point of `overlay` with a margin.
pub fn grid_around(overlay: &Overlay, n: usize) -> GridSpec {
    let mut points = overlay.samples.clone();
    points.extend(overlay.swa);
    points.extend(overlay.twa);
    points.extend(&overlay.trajectory);
    GridSpec::around(&points, n, 0.25)
}
