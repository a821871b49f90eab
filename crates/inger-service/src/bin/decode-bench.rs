//! The decode experiment of the paper (Boucher et al., ATC 2020, §5): decode one PNG with a
//! 10 ms deadline by a direct call, a thread (timed join: the thread cannot be stopped), a
//! process (fork, then kill at the deadline) and a preemptible function (cancelled at the
//! deadline), and report the time per decode (an image that decodes well within the deadline)
//! and per timeout (a decompression bomb that cannot). `decode-bench [--quick]`.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use inger_service::budget::thread_cpu_time;
use inger_service::inputs;
use inger_service::work::decode_image;

const DEADLINE: Duration = Duration::from_millis(10);
/// What a cancelled preemptible function may take to unwind.
const GRACE: Duration = Duration::from_millis(5);

/// One method's figures.
#[derive(Default)]
struct Figures {
    /// Time per completed decode.
    decode: Vec<Duration>,
    /// Time from the start to control back at the caller, per timeout.
    control: Vec<Duration>,
    /// Further time to clean up after a timeout (cancel, kill and reap).
    cleanup: Vec<Duration>,
    /// CPU time the decode burned after the deadline, per timeout.
    after: Vec<Duration>,
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|arg| arg == "--quick");
    if std::env::args().skip(1).any(|arg| arg != "--quick") {
        eprintln!("usage: decode-bench [--quick]");
        return ExitCode::FAILURE;
    }
    let (decodes, timeouts) = if quick { (60, 12) } else { (300, 40) };
    let photo = inputs::photo_png(512, 384);
    let bomb = inputs::png_bomb(2048);
    // Warm up: inger's safe-point tables (built at its first use in a process), the first
    // decode, the page cache of this program.
    let first_use = time(|| {
        let _ = inger::capabilities();
    });
    let _ = decode_image(photo.clone());

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|line| line.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let direct_bomb = time(|| {
        let _ = decode_image(bomb.clone());
    });
    println!(
        "# decode-bench: {} decodes and {} timeouts per method, deadline {DEADLINE:?}; CPU: {cpu}",
        decodes, timeouts
    );
    println!(
        "# images: a 512x384 photo-like PNG ({} KiB) and a 2048x2048 decompression bomb ({} KiB; a direct decode takes {:.1} ms)",
        photo.len() >> 10,
        bomb.len() >> 10,
        direct_bomb.as_secs_f64() * 1e3
    );
    println!(
        "# inger's first use in this process (safe-point tables from the symbol table): {:.1} ms",
        first_use.as_secs_f64() * 1e3
    );
    let floors = floors(if quick { 50 } else { 200 });
    println!(
        "# floors in this run: thread spawn+join {:.1} us, fork+wait {:.1} us (medians)",
        floors.0.as_secs_f64() * 1e6,
        floors.1.as_secs_f64() * 1e6
    );

    let rows: Vec<(&str, Figures)> = vec![
        ("direct call", direct(&photo, decodes)),
        (
            "thread (timed join)",
            threaded(&photo, &bomb, decodes, timeouts),
        ),
        (
            "process (fork + kill)",
            forked(&photo, &bomb, decodes, timeouts),
        ),
        (
            "preemptible function",
            preemptible(&photo, &bomb, decodes, timeouts),
        ),
    ];

    let direct_median = median(&rows[0].1.decode);
    println!();
    println!(
        "| method | decode median ms | decode p99 ms | decode / direct | timeout: control back median ms | p99 ms | cleanup median ms | CPU after deadline median ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, figures) in &rows {
        let ms = |samples: &[Duration], q: f64| {
            if samples.is_empty() {
                "–".to_string()
            } else {
                format!("{:.3}", quantile(samples, q).as_secs_f64() * 1e3)
            }
        };
        println!(
            "| {name} | {} | {} | {:.3} | {} | {} | {} | {} |",
            ms(&figures.decode, 0.5),
            ms(&figures.decode, 0.99),
            median(&figures.decode).as_secs_f64() / direct_median.as_secs_f64(),
            ms(&figures.control, 0.5),
            ms(&figures.control, 0.99),
            ms(&figures.cleanup, 0.5),
            ms(&figures.after, 0.5),
        );
    }
    println!();
    println!(
        "# control back: from the start of the call to the caller having control again (the deadline is at 10 ms)."
    );
    println!(
        "# cleanup: a preemptible function's cooperative cancellation (it unwinds and frees the image buffer); killing and reaping the child; nothing for the thread, which cannot be stopped: its CPU after the deadline is the decode's remainder."
    );
    ExitCode::SUCCESS
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(samples: &[Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    quantile(samples, 0.5)
}

/// Medians of a bare thread spawn+join and a bare fork+wait.
fn floors(samples: usize) -> (Duration, Duration) {
    let threads: Vec<Duration> = (0..samples)
        .map(|_| time(|| std::thread::spawn(|| ()).join().expect("an empty thread")))
        .collect();
    let forks: Vec<Duration> = (0..samples)
        .map(|_| {
            time(|| {
                // SAFETY: the child only calls _exit, which is async-signal-safe.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: ends the child at once.
                    unsafe { libc::_exit(0) };
                }
                reap(pid);
            })
        })
        .collect();
    (median(&threads), median(&forks))
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `pid` is our own child; `status` is a valid out-parameter.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
}

fn direct(photo: &[u8], decodes: usize) -> Figures {
    let decode = (0..decodes)
        .map(|_| {
            time(|| {
                let image = decode_image(photo.to_vec()).expect("the photo decodes");
                std::hint::black_box(image);
            })
        })
        .collect();
    Figures {
        decode,
        ..Figures::default()
    }
}

/// A thread per decode, joined with a timeout. After a timeout the thread runs on; it is
/// waited for (untimed) before the next sample, so threads do not pile up.
fn threaded(photo: &[u8], bomb: &[u8], decodes: usize, timeouts: usize) -> Figures {
    let mut figures = Figures::default();
    let run = |input: &[u8], figures: &mut Figures, expect_timeout: bool| {
        let input = input.to_vec();
        let (sender, receiver) = mpsc::channel();
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            let cpu = thread_cpu_time();
            let image = decode_image(input);
            let _ = sender.send(image.map(|image| image.into_raw()));
            thread_cpu_time().saturating_sub(cpu)
        });
        match receiver.recv_timeout(DEADLINE) {
            Ok(image) => {
                let took = start.elapsed();
                std::hint::black_box(image.expect("decodes"));
                let _ = thread.join();
                if !expect_timeout {
                    figures.decode.push(took);
                }
            }
            Err(_) => {
                let control = start.elapsed();
                let cpu = thread.join().unwrap_or_default();
                if expect_timeout {
                    figures.control.push(control);
                    figures.after.push(cpu.saturating_sub(DEADLINE));
                }
            }
        }
    };
    for _ in 0..decodes {
        run(photo, &mut figures, false);
    }
    for _ in 0..timeouts {
        run(bomb, &mut figures, true);
    }
    figures
}

/// A child process per decode: it decodes and writes the pixels into a pipe; the parent reads
/// them until the deadline, then kills and reaps the child.
fn forked(photo: &[u8], bomb: &[u8], decodes: usize, timeouts: usize) -> Figures {
    let mut figures = Figures::default();
    for (input, count, expect_timeout) in [(photo, decodes, false), (bomb, timeouts, true)] {
        for _ in 0..count {
            let start = Instant::now();
            let mut fds = [0; 2];
            // SAFETY: `fds` is a valid out-parameter for two descriptors.
            let created = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(created, 0, "pipe2");
            // SAFETY: the two descriptors were just created and are owned here only.
            let (read_end, write_end) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: the child decodes (allocation works after fork in glibc), writes to
            // the pipe and _exits; it never returns into the parent's code.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                drop(read_end);
                let pixels = decode_image(input.to_vec())
                    .map(|image| image.into_raw())
                    .unwrap_or_default();
                let mut file = std::fs::File::from(write_end);
                let _ = std::io::Write::write_all(&mut file, &pixels);
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(0) };
            }
            drop(write_end);
            let finished = read_until(&read_end, start + DEADLINE);
            let control = start.elapsed();
            match finished {
                Some(pixels) => {
                    std::hint::black_box(pixels);
                    reap(pid);
                    if !expect_timeout {
                        figures.decode.push(start.elapsed());
                    }
                }
                None => {
                    let cleanup = time(|| {
                        // SAFETY: `pid` is our own child, not yet reaped.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        reap(pid);
                    });
                    if expect_timeout {
                        figures.control.push(control);
                        figures.cleanup.push(cleanup);
                        // The child runs between the deadline and the kill at most.
                        figures
                            .after
                            .push(control.saturating_sub(DEADLINE) + cleanup);
                    }
                }
            }
        }
    }
    figures
}

/// Reads the pipe to its end, or gives up at `deadline` (`None`).
fn read_until(pipe: &OwnedFd, deadline: Instant) -> Option<Vec<u8>> {
    let mut file = std::fs::File::from(pipe.try_clone().ok()?);
    let mut data = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let mut poll = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready <= 0 {
            continue;
        }
        match file.read(&mut buffer) {
            Ok(0) => return Some(data),
            Ok(n) => data.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// A preemptible function per decode with the deadline as budget; at a timeout it is
/// cancelled cooperatively (it unwinds at its next cancellation point, freeing the image).
fn preemptible(photo: &[u8], bomb: &[u8], decodes: usize, timeouts: usize) -> Figures {
    let mut figures = Figures::default();
    for (input, count, expect_timeout) in [(photo, decodes, false), (bomb, timeouts, true)] {
        for _ in 0..count {
            let input = input.to_vec();
            let start = Instant::now();
            let cpu = thread_cpu_time();
            let linger = inger::launch(
                move || decode_image(input).map(|image| image.into_raw()),
                DEADLINE,
            )
            .expect("inger::launch");
            let control = start.elapsed();
            match linger {
                inger::Linger::Completion(pixels) => {
                    std::hint::black_box(pixels.expect("decodes"));
                    if !expect_timeout {
                        figures.decode.push(control);
                    }
                }
                inger::Linger::Continuation(paused) => {
                    let at_control = thread_cpu_time();
                    let cleanup = time(|| match paused.cancel_cooperatively(GRACE) {
                        Ok(None) => {}
                        Ok(Some(still_paused)) => {
                            eprintln!(
                                "decode-bench: a cancellation reached no cancellation point within {GRACE:?}; discarded"
                            );
                            drop(still_paused);
                        }
                        Err(error) => eprintln!("decode-bench: cancel: {error}"),
                    });
                    if expect_timeout {
                        let ran = at_control.saturating_sub(cpu);
                        figures.control.push(control);
                        figures.cleanup.push(cleanup);
                        // CPU past the deadline: the pause's lateness plus the unwinding.
                        figures.after.push(
                            ran.saturating_sub(DEADLINE)
                                + thread_cpu_time().saturating_sub(at_control),
                        );
                    }
                }
            }
        }
    }
    figures
}
