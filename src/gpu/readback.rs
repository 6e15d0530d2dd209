//! Reading a small device buffer back without stalling: copy into a staging buffer in
//! the step's own encoder, request the map after submit, and pick the values up on a
//! later step once the device got there. One staging buffer serves a whole run: a copy
//! still on its way when the values it holds lose their meaning is discarded.

use super::context::Gpu;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

const IDLE: u8 = 0;
const COPIED: u8 = 1;
const MAPPING: u8 = 2;
const READY: u8 = 3;
const FAILED: u8 = 4;

/// A staging buffer cycling through idle → copied → mapping → ready → idle.
pub struct AsyncReadback {
    staging: wgpu::Buffer,
    words: usize,
    state: Arc<AtomicU8>,
    /// The copy in flight is to be dropped when it arrives ([`AsyncReadback::discard`]).
    stale: AtomicBool,
}

impl AsyncReadback {
    /// A readback of `words` 4-byte words.
    pub fn new(gpu: &Gpu, words: usize) -> AsyncReadback {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("async readback"),
            size: (words * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        AsyncReadback {
            staging,
            words,
            state: Arc::new(AtomicU8::new(IDLE)),
            stale: AtomicBool::new(false),
        }
    }

    /// Words read back.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Forget the copy in flight, if any: [`AsyncReadback::try_take`] drops its values
    /// when they arrive and the next copy can be made then.
    pub fn discard(&self) {
        match self.state.load(Ordering::Acquire) {
            IDLE => {}
            // Recorded but never submitted: the next copy overwrites it.
            COPIED => self.state.store(IDLE, Ordering::Release),
            _ => self.stale.store(true, Ordering::Release),
        }
    }

    /// If idle, record a copy of the first words of `src` into `encoder`; true if it did.
    pub fn copy_if_idle(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer) -> bool {
        if self.state.load(Ordering::Acquire) != IDLE {
            return false;
        }
        encoder.copy_buffer_to_buffer(src, 0, &self.staging, 0, (self.words * 4) as u64);
        self.state.store(COPIED, Ordering::Release);
        true
    }

    /// Call after the submit that carries the copy: requests the map.
    pub fn after_submit(&self) {
        if self.state.load(Ordering::Acquire) != COPIED {
            return;
        }
        self.state.store(MAPPING, Ordering::Release);
        let state = self.state.clone();
        self.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            state.store(if r.is_ok() { READY } else { FAILED }, Ordering::Release);
        });
    }

    /// The values, if the map has completed since the last take (polls without blocking).
    pub fn try_take(&self, gpu: &Gpu) -> Option<Vec<f32>> {
        let _ = gpu.device.poll(wgpu::PollType::Poll);
        match self.state.load(Ordering::Acquire) {
            READY => {
                let values = self
                    .staging
                    .get_mapped_range(..)
                    .ok()
                    .map(|view| bytemuck::cast_slice::<u8, f32>(&view).to_vec());
                self.staging.unmap();
                self.state.store(IDLE, Ordering::Release);
                values.filter(|_| !self.stale.swap(false, Ordering::AcqRel))
            }
            FAILED => {
                self.stale.store(false, Ordering::Release);
                self.state.store(IDLE, Ordering::Release);
                None
            }
            _ => None,
        }
    }
}
