//! Process CPU time over wall time, from `/proc`: 100 means one core busy for the whole span.

use std::time::Instant;

/// CPU seconds (user + system) `pid` and every live descendant have used, read from
/// `/proc/<pid>/stat`. Descendants count so a browser's renderer and GPU processes are part of
/// the browser's share. Processes that vanished are missing (their time is lost), so measure
/// spans in which the tree stays up.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let ticks = clock_ticks();
    let procs = all_processes();
    let mut total = 0.0;
    let mut wanted = vec![pid];
    while let Some(p) = wanted.pop() {
        if let Some(stat) = procs.iter().find(|s| s.pid == p) {
            total += (stat.utime + stat.stime) as f64 / ticks;
        }
        wanted.extend(procs.iter().filter(|s| s.ppid == p).map(|s| s.pid));
    }
    total
}

/// A CPU meter over a span: [`CpuMeter::start`], then [`CpuMeter::percent`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    cpu_s: f64,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring `pid` and its descendants.
    pub fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            cpu_s: tree_cpu_seconds(pid),
            at: Instant::now(),
        }
    }

    /// CPU time used since the start over the wall time, in percent of one core.
    pub fn percent(&self) -> f64 {
        let wall = self.at.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        100.0 * (tree_cpu_seconds(self.pid) - self.cpu_s).max(0.0) / wall
    }
}

#[derive(Debug)]
struct Stat {
    pid: u32,
    ppid: u32,
    utime: u64,
    stime: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn all_processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect()
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses, so fields are
/// counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let pid = text.split(' ').next()?.parse().ok()?;
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15), numbered from 1 as in proc(5).
    Some(Stat {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        utime: fields.get(11)?.parse().ok()?,
        stime: fields.get(12)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0";
        let s = parse_stat(line).expect("parses");
        assert_eq!((s.pid, s.ppid, s.utime, s.stime), (4242, 17, 250, 31));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (cut)").is_none());
    }

    #[test]
    fn a_busy_process_is_seen_using_cpu() {
        let pid = std::process::id();
        let before = tree_cpu_seconds(pid);
        let t = Instant::now();
        let mut x = 0u64;
        // Spin until this process's own CPU time has grown by 50 ms (bounded by 20 s of wall
        // time, for a starved machine).
        while tree_cpu_seconds(pid) - before < 0.05 && t.elapsed().as_secs() < 20 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        assert!(
            tree_cpu_seconds(pid) - before >= 0.05,
            "no CPU time seen in /proc"
        );
    }
}
