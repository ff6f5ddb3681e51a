//! Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::{fs, time::Duration};

/// `VmRSS` and `VmHWM` (peak RSS) in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The memory of `pid` ("self" for this process), or `None` once it has gone.
#[must_use]
pub fn memory(pid: &str) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: field(&status, "VmRSS")?,
        hwm_kib: field(&status, "VmHWM")?,
    })
}

/// User + system CPU time of `pid` so far.
#[must_use]
pub fn cpu(pid: &str) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3, utime 14,
    // stime 15, so they are the 12th and 13th after the closing parenthesis.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on (reading it needs sysconf).
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let m = memory("self").unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        assert!(cpu("self").is_some());
        assert!(memory("0").is_none());
    }

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field(s, "VmRSS"), Some(1024));
        assert_eq!(field(s, "VmHWM"), Some(2048));
        assert_eq!(field(s, "VmSwap"), None);
    }
}
