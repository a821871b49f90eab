//! The `tokio` feature: spawning preemptible tasks, and a handle whose every future is
//! preemptible.

use core::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::{DEFAULT_SLICE, preemptible};
use crate::Budget;

/// `tokio::spawn` of `future` made preemptible with the [default slice](DEFAULT_SLICE).
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn` does.
pub fn spawn_preemptible<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_preemptible_with(future, DEFAULT_SLICE)
}

/// `tokio::spawn` of `future` made preemptible with `slice`.
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn` does.
pub fn spawn_preemptible_with<F>(future: F, slice: impl Into<Budget>) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(preemptible(future, slice))
}

/// A tokio runtime handle whose `spawn` and `block_on` make every future preemptible.
///
/// ```
/// # fn main() {
/// let runtime = tokio::runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .enable_all()
///     .build()
///     .unwrap();
/// let handle = inger::future::PreemptiveHandle::new(runtime.handle().clone(), inger::future::DEFAULT_SLICE);
/// let task = handle.spawn(async { (0..1_000_000u64).map(std::hint::black_box).sum::<u64>() });
/// assert_eq!(handle.block_on(task).unwrap(), 499_999_500_000);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PreemptiveHandle {
    handle: Handle,
    slice: Budget,
}

impl PreemptiveHandle {
    /// Wraps `handle`; futures get `slice` per poll.
    pub fn new(handle: Handle, slice: impl Into<Budget>) -> Self {
        PreemptiveHandle {
            handle,
            slice: slice.into(),
        }
    }

    /// The runtime this code runs in, with the [default slice](DEFAULT_SLICE).
    ///
    /// # Panics
    /// Outside a tokio runtime, as `Handle::current` does.
    pub fn current() -> Self {
        Self::new(Handle::current(), DEFAULT_SLICE)
    }

    /// The underlying tokio handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The slice given to each poll.
    pub fn slice(&self) -> Budget {
        self.slice
    }

    /// Spawns `future`, made preemptible, on the runtime.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(preemptible(future, self.slice))
    }

    /// Runs `future`, made preemptible, to completion on the current thread, inside the
    /// runtime's context (as `Handle::block_on`).
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.handle.block_on(preemptible(future, self.slice))
    }
}
