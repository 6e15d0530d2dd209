//! `twa-app --capture DIR`: start the selected preset, wait until the run has finished
//! and the final landscape is complete, then save a screenshot of the real window
//! (DIR/app.png) and the frame times and landscape timings seen (DIR/frames.json),
//! and close. Used for the README's screenshot and the frame-time measurement.

use crate::TwaApp;
use eframe::egui;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A pending capture.
pub struct Capture {
    dir: PathBuf,
    requested: bool,
    done: Arc<AtomicBool>,
}

impl Capture {
    /// Capture into `dir`.
    pub fn new(dir: PathBuf) -> Capture {
        Capture {
            dir,
            requested: false,
            done: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Milliseconds: mean, 95th percentile and maximum of `frames`.
fn summary(frames: &[f32]) -> serde_json::Value {
    let mut ms: Vec<f32> = frames.iter().map(|f| 1000.0 * f).collect();
    ms.sort_by(f32::total_cmp);
    let at = |q: f32| ms.get(((ms.len() as f32 * q) as usize).min(ms.len().saturating_sub(1)));
    serde_json::json!({
        "frames": ms.len(),
        "mean_ms": ms.iter().sum::<f32>() / ms.len().max(1) as f32,
        "p95_ms": at(0.95),
        "max_ms": ms.last(),
    })
}

/// Advance the capture of `app` by one frame.
pub fn step(app: &mut TwaApp, ctx: &egui::Context) {
    let settled = !app.running()
        && app.run.is_some()
        && (app.error.is_some() || (!app.landscape_busy() && app.shown.is_some()));
    let Some(capture) = &mut app.capture else {
        return;
    };
    if capture.done.load(Ordering::Acquire) {
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        return;
    }
    if capture.requested || !settled {
        return;
    }
    capture.requested = true;
    let busy: Vec<f32> = app
        .frames_seen
        .iter()
        .filter(|f| f.1)
        .map(|f| f.0)
        .collect();
    let idle: Vec<f32> = app
        .frames_seen
        .iter()
        .filter(|f| !f.1)
        .map(|f| f.0)
        .collect();
    let report = serde_json::json!({
        "during_landscape": summary(&busy),
        "otherwise": summary(&idle),
        "landscape_timings": app.timings,
        "status": app.status,
        "error": app.error,
    });
    let (dir, done, wake) = (capture.dir.clone(), capture.done.clone(), ctx.clone());
    let write = move |image: Arc<egui::ColorImage>| {
        let rgb: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(|p| [p.r(), p.g(), p.b()])
            .collect();
        let png = twa::landscape::render::encode_png(image.size[0], image.size[1], &rgb);
        let written = twa::files::ensure_writable_dir(&dir)
            .and_then(|_| twa::files::write_atomic(&dir.join("app.png"), &png))
            .and_then(|_| {
                twa::files::write_atomic(&dir.join("frames.json"), report.to_string().as_bytes())
            });
        if let Err(e) = written {
            eprintln!("error: {e}");
        }
        done.store(true, Ordering::Release);
        wake.request_repaint();
    };
    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
        egui::ScreenshotCallback::new(write),
    ));
    ctx.request_repaint();
}
