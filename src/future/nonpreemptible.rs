//! [`NonPreemptible`]: a future polled and dropped with preemption deferred.

use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::NoPreempt;

/// A future polled and dropped with preemption deferred ([`nopreempt`](crate::nopreempt)
/// around each poll and around its destructor); made by [`PreemptibleExt::nopreempt`](super::PreemptibleExt::nopreempt).
///
/// Use it inside a preemptible future around awaits of executor primitives (timers,
/// channels, I/O) whose critical sections the executor's workers share: see "Locks shared
/// with the executor" in the [module docs](crate::future). If a slice expires meanwhile, the pause
/// happens right after the poll returns.
#[must_use = "futures do nothing unless polled"]
pub struct NonPreemptible<F> {
    pub(super) inner: ManuallyDrop<F>,
}

impl<F: Future> Future for NonPreemptible<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _no_preempt = NoPreempt::new();
        // SAFETY: structural pinning of `inner`: it is never moved out, `Drop` drops it in
        // place, and `NonPreemptible` is `Unpin` only when `F` is.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut *this.inner) };
        inner.poll(cx)
    }
}

impl<F> Drop for NonPreemptible<F> {
    fn drop(&mut self) {
        let _no_preempt = NoPreempt::new();
        // SAFETY: dropped in place exactly once, here; never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

impl<F> fmt::Debug for NonPreemptible<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonPreemptible").finish_non_exhaustive()
    }
}
