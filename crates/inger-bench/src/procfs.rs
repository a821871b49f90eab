//! Memory figures of this process from `/proc/self`.

use std::io;

/// The system's page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Resident set size in bytes (`/proc/self/statm`, second field, times the page size).
pub fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages = parse_statm_resident(&statm).ok_or_else(|| invalid("/proc/self/statm", &statm))?;
    Ok(pages * page_size())
}

/// Memory used by this process's page tables in bytes (`VmPTE` in `/proc/self/status`).
/// Not part of the resident set, but paid by the kernel for every touched 2 MiB region.
pub fn page_table_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = parse_status_kib(&status, "VmPTE")
        .ok_or_else(|| invalid("/proc/self/status", "no VmPTE"))?;
    Ok(kib * 1024)
}

/// Address space of this process in bytes (`VmSize` in `/proc/self/status`): everything
/// mapped, resident or not.
pub fn address_space_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = parse_status_kib(&status, "VmSize")
        .ok_or_else(|| invalid("/proc/self/status", "no VmSize"))?;
    Ok(kib * 1024)
}

/// The resident page count in the text of `/proc/<pid>/statm`.
pub fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// The value of a `Key:   123 kB` line in the text of `/proc/<pid>/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

fn invalid(what: &str, text: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected contents of {what}: {text:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(
            parse_statm_resident("5120 1234 300 10 0 900 0\n"),
            Some(1234)
        );
        assert_eq!(parse_statm_resident("5120"), None);
        assert_eq!(parse_statm_resident(""), None);
    }

    #[test]
    fn status_values_are_found_by_exact_key() {
        let status = "Name:\tbench\nVmPTE:\t     148 kB\nVmPTEx:\t 1 kB\nVmSwap:\t0 kB\n";
        assert_eq!(parse_status_kib(status, "VmPTE"), Some(148));
        assert_eq!(parse_status_kib(status, "VmSwap"), Some(0));
        assert_eq!(parse_status_kib(status, "VmRSS"), None);
        assert_eq!(parse_status_kib("VmPTE:\t12 pages\n", "VmPTE"), None);
    }

    #[test]
    fn this_process_has_resident_memory_and_page_tables() {
        assert!(resident_bytes().unwrap() > 0);
        assert!(page_table_bytes().unwrap() > 0);
        assert!(address_space_bytes().unwrap() >= resident_bytes().unwrap());
        assert!(page_size().is_power_of_two());
    }
}
