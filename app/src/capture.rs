//! `twa-app --capture DIR`: start the selected preset, wait until the run has finished
//! and the final landscape is complete, then save a screenshot of the real window
//! (DIR/app.png) and the frame times and landscape timings seen (DIR/frames.json),
//! and close. Used for the screenshot in docs/app.md and the frame-time measurement.

use crate::TwaApp;
use eframe::egui;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The app with a pending capture: it runs the app's frames, records their times,
/// and captures once the app has settled.
pub struct Capturing {
    pub app: TwaApp,
    dir: PathBuf,
    requested: bool,
    done: Arc<AtomicBool>,
    /// Every frame time (seconds) and whether a landscape was being computed.
    frames_seen: Vec<(f32, bool)>,
}

impl Capturing {
    /// Capture `app` into `dir`.
    pub fn new(app: TwaApp, dir: PathBuf) -> Capturing {
        Capturing {
            app,
            dir,
            requested: false,
            done: Arc::new(AtomicBool::new(false)),
            frames_seen: Vec::new(),
        }
    }
}

impl eframe::App for Capturing {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let dt = ui.input(|i| i.unstable_dt);
        self.frames_seen.push((dt, self.app.landscape_busy()));
        eframe::App::ui(&mut self.app, ui, frame);
        self.step(ui.ctx());
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

impl Capturing {
    /// Advance the capture by one frame.
    fn step(&mut self, ctx: &egui::Context) {
        let app = &self.app;
        let settled = !app.running()
            && app.run.is_some()
            && (app.error.is_some() || (!app.landscape_busy() && app.shown.is_some()));
        if self.done.load(Ordering::Acquire) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if self.requested || !settled {
            return;
        }
        self.requested = true;
        let busy: Vec<f32> = self
            .frames_seen
            .iter()
            .filter(|f| f.1)
            .map(|f| f.0)
            .collect();
        let idle: Vec<f32> = self
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
        let (dir, done, wake) = (self.dir.clone(), self.done.clone(), ctx.clone());
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
                    twa::files::write_atomic(
                        &dir.join("frames.json"),
                        report.to_string().as_bytes(),
                    )
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
}
