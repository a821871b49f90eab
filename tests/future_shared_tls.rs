//! `inger::future::Preemptible` in the shared-TLS fallback (`INGER_SHARED_TLS=1`, run in a
//! child process): it polls its future directly, without preemption, and says so.

mod common;

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use inger::future::PreemptibleExt;

#[test]
fn the_wrapper_polls_directly_without_private_tls() {
    if common::child_mode().is_none() {
        let output = common::run_child(
            "the_wrapper_polls_directly_without_private_tls",
            "shared-tls",
            &[("INGER_SHARED_TLS", "1")],
        );
        output.assert_success();
        return;
    }
    assert!(!inger::future::preemption_available());
    let mut future =
        pin!(async { common::mix(3, 3_000_000) }.preemptible(Duration::from_micros(100)));
    let mut cx = Context::from_waker(Waker::noop());
    // One poll runs the whole computation: nothing preempts it.
    assert_eq!(
        future.as_mut().poll(&mut cx),
        Poll::Ready(common::mix(3, 3_000_000))
    );
    assert_eq!(future.expired_polls(), 0);
    assert_eq!(future.polls(), 1);
}
