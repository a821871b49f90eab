//! The proxy waker: what the inner future sees as `cx.waker()`, forwarding to the waker of
//! the wrapper's latest poll (an earlier poll's `Context` is gone when a paused poll
//! continues).

use core::task::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Wake;

use crate::runtime::RuntimeSection;

/// Forwards wakes to the waker of the wrapper's latest poll.
pub(super) struct ProxyWaker {
    pub(super) target: Mutex<Option<Waker>>,
    /// Set by every wake; cleared when a new poll of the inner future starts (rule 5).
    pub(super) woken: AtomicBool,
}

impl ProxyWaker {
    /// Makes `waker` the target (unless it already wakes the same task).
    pub(super) fn set_target(&self, waker: &Waker) {
        // The lock is also taken by wakes from inside preemptible polls: never pause while
        // holding it (the caller may itself run preemptibly).
        let _no_preempt = RuntimeSection::enter();
        let previous = {
            let mut target = self.target.lock().unwrap_or_else(PoisonError::into_inner);
            if target.as_ref().is_some_and(|t| t.will_wake(waker)) {
                return;
            }
            target.replace(waker.clone())
        };
        drop(previous); // outside the lock: dropping a waker may free a task
    }
}

impl Wake for ProxyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The executor's wake takes its scheduler's locks, which its workers take too: a poll
        // paused in there could deadlock them (see the module docs). A runtime section, not
        // `NoPreempt`: a wake is no cancellation point, since an unwind out of it would
        // cross the executor's code.
        let _no_preempt = RuntimeSection::enter();
        self.woken.store(true, Ordering::SeqCst);
        let target = self
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(target) = target {
            target.wake();
        }
    }
}
