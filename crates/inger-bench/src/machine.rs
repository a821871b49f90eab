//! What machine a run used: CPU model, CPU count, kernel, load, inger's capabilities.
//!
//! Figures from machines of the same kind differ by up to ten times in timer and signal costs
//! (an Intel and an AMD EPYC VM, say), so every run says which CPU it ran on.

use std::fmt;

/// The facts printed in a run's header.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// `model name` of the first CPU in `/proc/cpuinfo` (`unknown` if absent).
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// One-minute load average when the run started (`/proc/loadavg`), if readable.
    pub load_average: Option<f64>,
}

impl Machine {
    /// Reads this machine's facts.
    pub fn current() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpu_model: parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel_release().unwrap_or_else(|| "unknown".to_owned()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| parse_load_average(&text)),
        }
    }
}

impl fmt::Display for Machine {
    /// `cpu "AMD EPYC", 2 CPUs, kernel 6.18.0, load 0.75`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {:?}, {} CPUs, kernel {}",
            self.cpu_model, self.cpus, self.kernel
        )?;
        if let Some(load) = self.load_average {
            write!(f, ", load average {load:.2}")?;
        }
        Ok(())
    }
}

/// The first `model name` value in the text of `/proc/cpuinfo`.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The one-minute load average in the text of `/proc/loadavg`.
pub fn parse_load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

fn kernel_release() -> Option<String> {
    let mut name = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `name` is a valid out-parameter for uname.
    if unsafe { libc::uname(name.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: uname succeeded and filled the structure (zeroed before in any case).
    let name = unsafe { name.assume_init() };
    // SAFETY: `release` is a NUL-terminated string inside the structure (zeroed before, so
    // terminated even if the kernel filled every byte but the last).
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n\
                       model name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        // `model` alone is not `model name`.
        assert_eq!(parse_cpu_model("model\t\t: 1\n"), None);
        assert_eq!(parse_cpu_model(""), None);
    }

    #[test]
    fn load_average_is_the_first_field() {
        assert_eq!(
            parse_load_average("0.75 0.91 0.47 2/180 1234\n"),
            Some(0.75)
        );
        assert_eq!(parse_load_average(""), None);
        assert_eq!(parse_load_average("busy"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let machine = Machine::current();
        assert!(machine.cpus >= 1);
        assert!(!machine.kernel.is_empty());
        let line = machine.to_string();
        assert!(line.starts_with("cpu \""), "{line}");
    }
}
