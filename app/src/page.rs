//! The browser as the app's platform: the page's one WebGPU device, timers that let
//! the page draw, downloads, and the run's data fetched from the page's site. The
//! workers and the app use it; the page's entry point ([`crate::web`]) opens the device.

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
pub async fn open_page_device() -> Result<()> {
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
