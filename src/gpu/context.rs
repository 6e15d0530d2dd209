//! The GPU context: instance, adapter choice, device and queue with the adapter's real
//! limits (wgpu's defaults are lower than what most adapters offer).

use super::Tuning;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Which adapter to open: `None` takes the best one (discrete, then integrated, then
/// any other), `Some(s)` an index from `twa info` or a case-insensitive part of a name.
pub type AdapterChoice<'a> = Option<&'a str>;

/// An open device and its queue, with what was learned about the adapter (clones
/// share the device).
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The kernels' tuning: the adapter type's, or the one `TWA_KERNELS` forces.
    pub tuning: Tuning,
    /// The first device error (out of memory, device lost, validation), if any.
    failure: Arc<Mutex<Option<String>>>,
}

/// Keep Mesa's device-selection layer (`VK_LAYER_MESA_device_select`, an implicit
/// Vulkan layer that `mesa-vulkan-drivers` installs) from probing for a Wayland
/// compositor where none can be reached. Mesa 22.3's layer (Debian 12's) connects to
/// Wayland at every device enumeration, and without `XDG_RUNTIME_DIR` libwayland
/// prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` — twice a
/// command on a headless machine. The layer only orders adapters by the display's
/// GPU, which a machine without a compositor does not have, so there it is turned off
/// with its own switch (`NODEVICE_SELECT=1`), unless the user steers it
/// (`MESA_VK_DEVICE_SELECT`, `DRI_PRIME`, or `NODEVICE_SELECT` already set).
///
/// Call at the start of `main`, before any thread starts: it sets an environment
/// variable, which the Vulkan loader reads when the first instance is created.
#[cfg(not(target_arch = "wasm32"))]
pub fn quiet_display_probe() {
    let set = |name: &str| std::env::var_os(name).is_some();
    let compositor_reachable =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if !compositor_reachable
        && !set("NODEVICE_SELECT")
        && !set("MESA_VK_DEVICE_SELECT")
        && !set("DRI_PRIME")
    {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn adapters_of(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    pollster::block_on(wgpu::Instance::new(desc).enumerate_adapters(backends))
}

/// Every adapter wgpu can see, in enumeration order (the indices `--adapter` takes):
/// those of `WGPU_BACKEND` if set, else those of the primary backends (Vulkan, Metal,
/// DX12) and, only where none of them has one, GL's — probing GL without a display
/// prints noise (EGL, XDG_RUNTIME_DIR) on headless machines.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    if let Some(backends) = wgpu::Backends::from_env() {
        return adapters_of(backends);
    }
    let primary = adapters_of(wgpu::Backends::PRIMARY);
    if primary.is_empty() {
        adapters_of(wgpu::Backends::GL)
    } else {
        primary
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// The adapters best first: a real GPU before a software one; among equals, Vulkan
/// first (it is what the tests run on).
#[cfg(not(target_arch = "wasm32"))]
fn by_preference(mut adapters: Vec<wgpu::Adapter>) -> Vec<wgpu::Adapter> {
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            rank(info.device_type),
            info.backend != wgpu::Backend::Vulkan,
        )
    });
    adapters
}

/// No adapter on any backend searched.
#[cfg(not(target_arch = "wasm32"))]
fn none_found() -> Error {
    let searched =
        wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY | wgpu::Backends::GL);
    Error::NoAdapter(format!(" for backends {searched:?}"))
}

/// The adapter `--adapter` names: an index into [`list_adapters`] or part of a name.
#[cfg(not(target_arch = "wasm32"))]
fn named_adapter(wanted: &str) -> Result<wgpu::Adapter> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        return Err(none_found());
    }
    if let Ok(index) = wanted.parse::<usize>() {
        let count = adapters.len();
        return adapters.into_iter().nth(index).ok_or_else(|| {
            Error::NoAdapter(format!(
                ": --adapter {index} but only {count} adapter(s) exist (see `twa info`)"
            ))
        });
    }
    let needle = wanted.to_lowercase();
    adapters
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&needle))
        .ok_or_else(|| {
            Error::NoAdapter(format!(" whose name contains `{wanted}` (see `twa info`)"))
        })
}

impl Gpu {
    /// Open the adapter chosen by `choice` with all the limits it offers. Without a
    /// choice, an adapter whose device cannot be opened (a broken driver; Wine's
    /// DX12 over a software Vulkan) gives way to the next best, with a warning.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: AdapterChoice) -> Result<Gpu> {
        if let Some(wanted) = choice {
            return Gpu::from_adapter(&named_adapter(wanted)?);
        }
        let mut failed: Option<Error> = None;
        for adapter in by_preference(list_adapters()) {
            match Gpu::from_adapter(&adapter) {
                Ok(gpu) => {
                    if let Some(e) = failed {
                        eprintln!("warning: {e}; using {} instead", gpu.info.name);
                    }
                    return Ok(gpu);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        Err(failed.unwrap_or_else(none_found))
    }

    /// The adapter of local rank `local` in a job of several processes: the
    /// `local`-th (modulo their number) of the adapters of the best one's kind and
    /// backend, so that ranks spread over a machine's GPUs.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn for_local_rank(local: usize) -> Result<Gpu> {
        let adapters = by_preference(list_adapters());
        let best = adapters.first().ok_or_else(none_found)?.get_info();
        let alike: Vec<_> = adapters
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                info.device_type == best.device_type && info.backend == best.backend
            })
            .collect();
        Gpu::from_adapter(&alike[local % alike.len()])
    }

    /// Open a device on `adapter`, requesting the adapter's own limits (blocking).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let tuning = Tuning::for_adapter(info.device_type)?;
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("twa"),
            // Subgroups only where offered: they speed up one matrix-product variant;
            // timestamp queries time kernels in `twa bench`; a pipeline cache keeps
            // compiled kernels between runs.
            required_features: adapter.features()
                & (wgpu::Features::SUBGROUP
                    | wgpu::Features::TIMESTAMP_QUERY
                    | wgpu::Features::PIPELINE_CACHE),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| Error::Device {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Gpu {
            tuning,
            ..Gpu::from_device(adapter, device, queue)
        })
    }

    /// Take over a device already opened on `adapter` (in a browser, where opening is
    /// asynchronous), with the limits it was opened with and the tuning of its type.
    pub fn from_device(adapter: &wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        // Errors surface as `Error::Gpu` at the next wait instead of aborting the process.
        let failure = Arc::new(Mutex::new(None));
        let record = |slot: &Arc<Mutex<Option<String>>>, message: String| {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(message.split_whitespace().collect::<Vec<_>>().join(" "));
        };
        let slot = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| record(&slot, e.to_string())));
        let slot = failure.clone();
        device.set_device_lost_callback(move |reason, message| {
            record(&slot, format!("device lost ({reason:?}): {message}"))
        });
        let info = adapter.get_info();
        Gpu {
            tuning: Tuning::of_type(info.device_type),
            info,
            limits: device.limits(),
            device,
            queue,
            failure,
        }
    }

    /// One line naming the adapter: name, backend, driver.
    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// Whether the device runs subgroup operations with subgroups of at least `min_size`.
    pub fn has_subgroups(&self, min_size: u32) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size >= min_size
    }

    /// Words a storage window must start on: the adapter's offset alignment, at least
    /// one vec4.
    pub fn window_align(&self) -> usize {
        (self.limits.min_storage_buffer_offset_alignment as usize / 4).max(4)
    }

    /// The largest storage binding in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Wait until all submitted work has finished; fails if the device reported an
    /// error. Natively the device is polled until then (callbacks of finished work,
    /// such as maps, run meanwhile); on the web the browser reports it.
    pub async fn wait(&self) -> Result<()> {
        let (tx, done) = super::signal::signal();
        self.queue.on_submitted_work_done(move || tx.send(()));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        done.await;
        self.check()
    }

    /// The first error the device reported (out of memory, device lost, ...), if any.
    pub fn check(&self) -> Result<()> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(message) => Err(Error::Gpu(message.clone())),
            None => Ok(()),
        }
    }
}

/// `name (backend, type, driver version)` for an adapter.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{} ({:?}, {:?}, {})",
        info.name, info.backend, info.device_type, driver
    )
}
