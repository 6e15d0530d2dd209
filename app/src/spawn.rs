//! Where the workers run: natively on a named thread of their own (blocking on the
//! engine's futures), in a browser as futures of the page's event loop (which is where
//! WebGPU answers). Their messages travel over channels either way.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use twa::gpu::Gpu;

/// A running background task.
pub struct Task {
    done: Arc<AtomicBool>,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Run the future `make` returns in the background, as `name`.
pub fn spawn<F, Fut>(name: &str, make: F) -> Task
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    // Made where it runs: the future itself need not move between threads.
    let task = move || async move {
        make().await;
        finished.store(true, Ordering::Release);
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || pollster::block_on(task()))
            .expect("spawn a worker thread");
        Task {
            done,
            thread: Some(thread),
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = name;
        wasm_bindgen_futures::spawn_local(task());
        Task { done }
    }
}

impl Task {
    /// Whether the task has ended.
    pub fn finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Wait for the end natively (a stopped worker ends at its next step); on the web
    /// the future ends by itself.
    pub fn join(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The next message of `rx`, None once every sender is gone: natively a blocking
/// receive; on the web the task sleeps a frame while the channel is empty.
pub async fn next<T>(rx: &Receiver<T>) -> Option<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rx.recv().ok()
    }
    #[cfg(target_arch = "wasm32")]
    loop {
        match rx.try_recv() {
            Ok(value) => return Some(value),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => crate::page::sleep_ms(16).await,
        }
    }
}

/// A device of the best adapter natively; on the web the page's one compute device
/// (opened once by the page, shared by both workers).
pub fn open_gpu() -> twa::error::Result<Gpu> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        Gpu::new(None)
    }
    #[cfg(target_arch = "wasm32")]
    {
        crate::page::page_gpu()
    }
}
