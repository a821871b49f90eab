//! The service under test as a child process: starting it, reading its resident set and CPU
//! time (with its worker processes') from `/proc`, stopping it.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::budget::Budget;
use crate::protect::Mode;

/// A running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    address: SocketAddr,
}

impl ServiceProcess {
    /// Starts `program` (the `inger-service` executable, or one that runs
    /// [`service_main`](crate::cli::service_main) after `leading` arguments) in `mode` on a
    /// free loopback port and waits (at most 30 s) for it to say where it listens.
    ///
    /// # Errors
    /// If it cannot be started or does not say where it listens.
    pub fn start(
        program: &Path,
        leading: &[String],
        mode: Mode,
        budget: Budget,
        workers: usize,
        processes: usize,
    ) -> io::Result<ServiceProcess> {
        let mut child = Command::new(program)
            .args(leading)
            .args(["--mode", mode.name(), "--port", "0"])
            .args(["--budget", &format!("{}us", budget.cpu.as_micros())])
            .args(["--slice", &format!("{}us", budget.slice.as_micros())])
            .args(["--grace", &format!("{}us", budget.grace.as_micros())])
            .args(["--workers", &workers.to_string()])
            .args(["--processes", &processes.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = sender.send(first);
            // Keep draining, so the service never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "{} did not say where it listens",
                    program.display()
                )));
            }
        };
        let address = line
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected first line: {line:?}")))?;
        Ok(ServiceProcess { child, address })
    }

    /// Where the service listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The resident set of the service and its worker processes, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let pid = self.child.id();
        std::iter::once(pid)
            .chain(children(pid))
            .map(resident_of)
            .sum()
    }

    /// CPU time of the service, its reaped children and its live worker processes.
    pub fn cpu_time(&self) -> Duration {
        let pid = self.child.id();
        let own = cpu_of(pid, true);
        children(pid)
            .into_iter()
            .map(|child| cpu_of(child, false))
            .sum::<Duration>()
            + own
    }

    /// Stops the service and its worker processes (`SIGKILL`: a stalled service would not
    /// handle anything gentler) and reaps it.
    pub fn stop(mut self) {
        let workers = children(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers {
            // SAFETY: kill has no memory-safety preconditions; these are our own children's
            // children, read just before, and not yet reaped by anyone else.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Children of `pid` (from `/proc/PID/task/*/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn resident_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// User + system time of `pid` (plus its reaped children's if `with_reaped`).
fn cpu_of(pid: u32, with_reaped: bool) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14..=17, so 10..=13 here (state was skipped).
    let ticks: u64 = match fields.get(10..14) {
        Some([utime, stime, cutime, cstime]) if with_reaped => utime + stime + cutime + cstime,
        Some([utime, stime, _, _]) => utime + stime,
        _ => 0,
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        let me = std::process::id();
        assert!(resident_of(me) > 1 << 20);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        assert!(cpu_of(me, true) > Duration::ZERO);
    }
}
