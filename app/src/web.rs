//! The app in a browser: the page's canvas `#twa` runs the same [`TwaApp`] (eframe's
//! web runner, drawing with WebGL2), training and the landscape on WebGPU. `?preset=NAME` picks the preset, `?autostart` starts it at
//! once. The element `#twa-status`, if the page has one, holds the run's state as JSON
//! (status, results, landscape, frame times) for scripts and the browser test.

use crate::TwaApp;
use std::cell::RefCell;
use twa::error::{Error, Result};
use twa::gpu::Gpu;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

thread_local! {
    /// The page's compute device, once opened.
    static PAGE_GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The page's compute device (shared by training and the landscape).
pub fn page_gpu() -> Result<Gpu> {
    PAGE_GPU
        .with(|g| g.borrow().clone())
        .ok_or_else(|| Error::NoAdapter("the page has no WebGPU device".into()))
}

/// Open the page's compute device: the browser's WebGPU adapter with its own limits
/// (as natively), shared by training and the landscape.
async fn open_page_device() -> Result<()> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::BROWSER_WEBGPU;
    let instance = wgpu::Instance::new(desc);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .map_err(|e| Error::NoAdapter(format!("this browser offers no WebGPU adapter: {e}")))?;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("twa"),
            required_features: adapter.features() & wgpu::Features::SUBGROUP,
            required_limits: adapter.limits(),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Device {
            adapter: adapter.get_info().name,
            reason: e.to_string(),
        })?;
    let gpu = Gpu::from_device(&adapter, device, queue);
    PAGE_GPU.with(|g| *g.borrow_mut() = Some(gpu));
    // The instance and adapter stay for the page's lifetime.
    std::mem::forget((instance, adapter));
    Ok(())
}

/// eframe draws with WebGL2 (through wgpu's GL backend): drawing a canvas with WebGPU
/// lost the device in headless Chromium here, and WebGL draws the same picture.
fn options() -> eframe::WebOptions {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.instance_descriptor.backends = wgpu::Backends::GL;
    let mut options = eframe::WebOptions::default();
    options.wgpu_options.wgpu_setup = egui_wgpu::WgpuSetup::CreateNew(setup);
    options
}

/// A future that resolves after `ms` milliseconds (a task of the page's event loop,
/// so the page renders meanwhile).
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
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
    let preset = query("preset").unwrap_or_else(|| crate::app::PRESETS[0].to_string());
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
                    Ok(Box::new(app))
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
pub fn report(app: &TwaApp) {
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

/// Offer `bytes` to the user as the download `name` (a PNG).
pub fn download(name: &str, bytes: &[u8]) -> Result<()> {
    let fail = |e: JsValue| Error::Config(format!("cannot offer {name} for download: {e:?}"));
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("image/png");
    let blob =
        web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(fail)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(fail)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| fail(JsValue::from_str("no document")))?;
    let link: web_sys::HtmlAnchorElement = document
        .create_element("a")
        .map_err(fail)?
        .dyn_into()
        .map_err(|e| fail(e.into()))?;
    link.set_href(&url);
    link.set_download(name);
    link.click();
    web_sys::Url::revoke_object_url(&url).map_err(fail)
}

/// Fetch `url` (relative to the page) as bytes.
async fn fetch(url: &str) -> Result<Vec<u8>> {
    let fail = |e: JsValue| Error::io(url, format!("{e:?}"));
    let window = web_sys::window().ok_or_else(|| fail(JsValue::from_str("no window")))?;
    let response: web_sys::Response =
        wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
            .await
            .map_err(fail)?
            .dyn_into()
            .map_err(fail)?;
    if !response.ok() {
        return Err(Error::io(
            url,
            format!("HTTP {} {}", response.status(), response.status_text()),
        ));
    }
    let body = wasm_bindgen_futures::JsFuture::from(response.array_buffer().map_err(fail)?)
        .await
        .map_err(fail)?;
    Ok(js_sys::Uint8Array::new(&body).to_vec())
}

/// The run's data in a browser: generated in code, or the IDX files fetched from the
/// data directory's URL (relative to the page; `web/build.sh` puts the shipped
/// Fashion-MNIST subset at `data/fashion-mnist-subset`).
pub async fn load_data(config: &twa::run::config::RunConfig) -> Result<twa::data::Dataset> {
    if !config.data.generated.is_empty() {
        return config.load_data();
    }
    let dir = config.data.dir.trim_end_matches('/');
    let mut files = std::collections::HashMap::new();
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        files.insert(name, fetch(&format!("{dir}/{name}")).await?);
    }
    config.load_idx_data(&mut |name| {
        files
            .remove(name)
            .ok_or_else(|| Error::io(format!("{dir}/{name}"), "not fetched"))
    })
}
