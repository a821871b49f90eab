//! A function and its caller on one thread sharing a bounded `std::sync::mpsc` channel (issue
//! 11, finding 5). The standard library's channel code is mostly inlined into the program,
//! where inger cannot see it as a critical section, and a function paused half-way through a
//! send leaves a slot its caller's `try_recv` spins on forever: the README names this a
//! deadlock rule, like a lock shared with the caller, and gives the remedy this test checks
//! under a storm of 20–50 µs slices: send in `nopreempt`, with `try_send` (a blocking send
//! inside a section would wait for a caller that cannot run), pausing when the channel is
//! full.

mod common;

use std::sync::mpsc::{TrySendError, sync_channel};

const MESSAGES: u64 = 20_000;

#[test]
fn sends_in_nopreempt_never_leave_a_half_written_slot() {
    let (sender, receiver) = sync_channel::<(u64, String)>(16);
    let mut received = Vec::with_capacity(MESSAGES as usize);
    let (sent, stops) = common::storm(
        move || {
            for n in 0..MESSAGES {
                let mut message = (n, format!("message {n}"));
                loop {
                    match inger::nopreempt(|| sender.try_send(message)) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            message = back;
                            inger::pause(); // let the caller drain
                        }
                        Err(TrySendError::Disconnected(_)) => panic!("the caller hung up"),
                    }
                }
                common::spin(n, 200);
            }
            MESSAGES
        },
        |_| {
            while let Ok(message) = receiver.try_recv() {
                received.push(message);
            }
        },
    );
    while let Ok(message) = receiver.try_recv() {
        received.push(message);
    }
    assert_eq!(sent, MESSAGES);
    assert!(stops > 0);
    assert_eq!(received.len() as u64, MESSAGES);
    for (index, (n, text)) in received.iter().enumerate() {
        assert_eq!(*n, index as u64, "in order");
        assert_eq!(text, &format!("message {n}"));
    }
}
