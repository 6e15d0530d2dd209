//! The backend's pipeline cache where it offers one (Vulkan), kept on disk per adapter
//! so that a later run on the same driver skips compiling the kernels again. The
//! directory is `$TWA_PIPELINE_CACHE`, else the user's cache directory
//! (`$XDG_CACHE_HOME/twa`, `~/.cache/twa`, `%LOCALAPPDATA%\twa`); `TWA_PIPELINE_CACHE=off`
//! turns it off. A missing, stale or damaged file only means compiling afresh.

use super::context::Gpu;
use std::path::PathBuf;

/// A pipeline cache and the file it is loaded from and saved to.
pub struct DiskCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
}

/// Where the caches live, if anywhere.
fn directory() -> Option<PathBuf> {
    match std::env::var_os("TWA_PIPELINE_CACHE") {
        Some(dir) if dir == "off" => return None,
        Some(dir) => return Some(PathBuf::from(dir)),
        None => {}
    }
    let user_cache = if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
    } else {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
    };
    user_cache.map(|d| d.join("twa"))
}

impl DiskCache {
    /// The cache for `gpu`'s adapter in the cache directory (see the module doc).
    pub fn open(gpu: &Gpu) -> Option<DiskCache> {
        DiskCache::open_in(gpu, directory()?)
    }

    /// The cache for `gpu`'s adapter in `dir`, filled from its file when there is
    /// one; `None` where the device has no pipeline cache.
    pub fn open_in(gpu: &Gpu, dir: PathBuf) -> Option<DiskCache> {
        if cfg!(target_arch = "wasm32")
            || !gpu
                .device
                .features()
                .contains(wgpu::Features::PIPELINE_CACHE)
        {
            return None;
        }
        let path = dir.join(wgpu::util::pipeline_cache_key(&gpu.info)?);
        let data = std::fs::read(&path).ok();
        // SAFETY: the data was written by `save` from `PipelineCache::get_data`; wgpu
        // checks its header (adapter, driver, size) and `fallback` starts empty when
        // it does not match.
        let cache = unsafe {
            gpu.device
                .create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("twa pipelines"),
                    data: data.as_deref(),
                    fallback: true,
                })
        };
        Some(DiskCache { cache, path })
    }

    /// The file the cache is kept in.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Write the cache back (a temporary file renamed over the old one, so a reader
    /// never sees half a file). Failing to write only costs the next run the compile.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        if std::fs::read(&self.path).is_ok_and(|old| old == data) {
            return;
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        let temp = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&temp, &data))
            .and_then(|()| std::fs::rename(&temp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }
}
