//! Awaiting wgpu's callbacks: a map or a "work done" notice arrives through a callback
//! (on the web from the browser's event loop, natively during `device.poll`); a
//! [`Signal`] turns it into a future.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A value some callback will deliver once.
pub struct Signal<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// The sending half, moved into the callback.
pub struct Sender<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// A new signal and the sender that completes it.
pub fn signal<T>() -> (Sender<T>, Signal<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender { slot: slot.clone() }, Signal { slot })
}

impl<T> Sender<T> {
    /// Deliver the value and wake whoever awaits it.
    pub fn send(self, value: T) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.value = Some(value);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }
}

impl<T> Future for Signal<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_resolves_with_what_was_sent_before_or_after_the_first_poll() {
        let (tx, rx) = signal();
        tx.send(7);
        assert_eq!(pollster::block_on(rx), 7);
        let (tx, rx) = signal();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send("late");
        });
        assert_eq!(pollster::block_on(rx), "late");
        sender.join().unwrap();
    }
}
