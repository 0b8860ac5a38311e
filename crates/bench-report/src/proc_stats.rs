//! CPU time and memory of a process or thread, from Linux's `/proc` (zero where it cannot be read).

/// User + system CPU seconds of process `pid` so far.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // Fields after the command name: state is 0, utime 11, stime 12 (in clock ticks of 1/100 s).
    (ticks(11) + ticks(12)) / 100.0
}

/// On-CPU seconds of the calling thread so far (`/proc/thread-self/schedstat`): unlike wall-clock time it
/// does not count the time the thread waited for a core.
pub fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// A `kB` field of `/proc/PID/status` (`VmHWM:` is the peak resident set, `VmRSS:` the current one).
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(status_kb(pid, "VmHWM:") > 0);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(thread_cpu_seconds().unwrap() > 0.0);
        assert_eq!(status_kb(pid, "NoSuchKey:"), 0);
    }
}
