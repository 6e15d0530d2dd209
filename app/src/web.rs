//! The app in a browser: the page's canvas `#twa` runs the same [`TwaApp`] (eframe's
//! web runner, drawing with WebGL2), training and the landscape on WebGPU. `?preset=NAME` picks the preset, `?autostart` starts it at
//! once. The element `#twa-status`, if the page has one, holds the run's state as JSON
//! (status, results, landscape, frame times) for scripts and the browser test.

use crate::page::open_page_device;
use crate::TwaApp;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// eframe draws with WebGL2 (through wgpu's GL backend): drawing a canvas with WebGPU
/// lost the device in headless Chromium here, and WebGL draws the same picture.
fn options() -> eframe::WebOptions {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.instance_descriptor.backends = wgpu::Backends::GL;
    let mut options = eframe::WebOptions::default();
    options.wgpu_options.wgpu_setup = egui_wgpu::WgpuSetup::CreateNew(setup);
    options
}

/// The page's query parameter `name`, if present (`Some("")` for a bare flag).
fn query(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Entry point: start the app on the canvas `#twa`.
#[wasm_bindgen(start)]
pub fn start() {
    let preset = query("preset").unwrap_or_else(|| crate::state::PRESETS[0].to_string());
    let autostart = query("autostart").is_some();
    wasm_bindgen_futures::spawn_local(async move {
        let canvas = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("twa"))
            .and_then(|e| e.dyn_into::<web_sys::HtmlCanvasElement>().ok());
        let Some(canvas) = canvas else {
            web_sys::console::error_1(&"twa: the page has no <canvas id=\"twa\">".into());
            return;
        };
        if let Err(e) = open_page_device().await {
            set_status(&serde_json::json!({ "error": e.to_string() }).to_string());
            return;
        }
        // The runner lives as long as the page (dropping it shuts the app down).
        let runner: &'static eframe::WebRunner = Box::leak(Box::new(eframe::WebRunner::new()));
        let started = runner
            .start(
                canvas,
                options(),
                Box::new(move |cc| {
                    let mut app = TwaApp::new(&cc.egui_ctx, &preset);
                    if autostart {
                        app.start();
                    }
                    Ok(Box::new(Page(app)))
                }),
            )
            .await;
        if let Err(e) = started {
            web_sys::console::error_1(&e);
            set_status(&format!(
                "{{\"error\": {}}}",
                serde_json::json!(format!("{e:?}"))
            ));
        }
    });
}

/// The app on the page: each frame drawn, then its state published (see [`report`]).
struct Page(TwaApp);

impl eframe::App for Page {
    fn ui(&mut self, ui: &mut eframe::egui::Ui, frame: &mut eframe::Frame) {
        eframe::App::ui(&mut self.0, ui, frame);
        report(&self.0);
    }
}

/// Write `text` into `#twa-status` (if the page has one).
fn set_status(text: &str) {
    if let Some(element) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("twa-status"))
    {
        element.set_text_content(Some(text));
    }
}

/// Publish the app's state into `#twa-status`.
fn report(app: &TwaApp) {
    let results: Vec<_> = app
        .curves
        .results
        .iter()
        .map(|r| serde_json::json!({ "method": r.method, "acc": r.acc, "loss": r.loss, "epochs": r.epochs }))
        .collect();
    let landscape = app.shown.as_ref().map(|s| {
        let grid = &s.view.grid;
        serde_json::json!({
            "n": grid.spec.n,
            "complete": grid.complete(),
            "finite": grid.loss.iter().all(|v| v.is_finite()),
        })
    });
    // Frame times so far (ms): count, mean, 95th percentile, worst.
    let mut frames: Vec<f32> = app.frames.iter().map(|f| 1000.0 * f.0).collect();
    frames.sort_by(f32::total_cmp);
    let at = |q: f32| {
        frames.get(((frames.len() as f32 * q) as usize).min(frames.len().saturating_sub(1)))
    };
    let frame_ms = serde_json::json!({
        "count": frames.len(),
        "mean": frames.iter().sum::<f32>() / frames.len().max(1) as f32,
        "p95": at(0.95),
        "max": frames.last(),
    });
    let status = serde_json::json!({
        "running": app.running(),
        "status": app.status,
        "error": app.error,
        "adapter": app.adapter,
        "results": results,
        "landscape": landscape,
        "landscape_busy": app.landscape_busy(),
        "frame_ms": frame_ms,
    });
    set_status(&status.to_string());
}
