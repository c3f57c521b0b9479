//! CPU and memory of the processes a run involves (the generator itself, labstream,
//! Kafka), read from Linux `/proc` at the start and the end of the measurement window.
//! On a small shared machine, who used the cores explains the figures as much as the
//! figures themselves. Elsewhere than Linux the readings are simply absent.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on every Linux ABI in use.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process to watch: a name for the report and its pid (`None` = this process).
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: Option<u32>,
}

impl std::str::FromStr for Watched {
    type Err = String;

    /// `NAME=PID`, e.g. `labstream=4242`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, pid) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| format!("{pid:?} is not a process id"))?;
        Ok(Self {
            name: name.trim().to_owned(),
            pid: Some(pid),
        })
    }
}

impl Watched {
    fn proc_dir(&self) -> String {
        match self.pid {
            Some(pid) => format!("/proc/{pid}"),
            None => "/proc/self".to_owned(),
        }
    }
}

/// CPU counters at one moment.
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    machine_busy: Option<u64>,
    processes: Vec<(String, Option<u64>)>,
}

/// Cores used on average over an interval (1.0 = one core fully busy).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct CpuUse {
    /// Every process of the machine together.
    pub machine_cores: Option<f64>,
    /// Each watched process.
    pub processes: BTreeMap<String, f64>,
}

/// Memory of a watched process at the end of the run, in KiB.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Memory {
    /// Peak resident set since the process started (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Resident set now (`VmRSS`).
    pub rss_kib: u64,
}

impl CpuSnapshot {
    pub fn take(watched: &[Watched]) -> Self {
        Self {
            at: Instant::now(),
            machine_busy: machine_busy_ticks(),
            processes: watched
                .iter()
                .map(|w| (w.name.clone(), process_ticks(&w.proc_dir())))
                .collect(),
        }
    }

    /// Average cores used between `self` and the later snapshot `end`.
    pub fn until(&self, end: &CpuSnapshot) -> CpuUse {
        let secs = end.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = |a: u64, b: u64| {
            let v = b.saturating_sub(a) as f64 / TICKS_PER_SECOND / secs;
            (v * 100.0).round() / 100.0
        };
        let mut processes = BTreeMap::new();
        for ((name, a), (_, b)) in self.processes.iter().zip(&end.processes) {
            if let (Some(a), Some(b)) = (a, b) {
                processes.insert(name.clone(), cores(*a, *b));
            }
        }
        CpuUse {
            machine_cores: match (self.machine_busy, end.machine_busy) {
                (Some(a), Some(b)) => Some(cores(a, b)),
                _ => None,
            },
            processes,
        }
    }
}

/// Memory of each watched process that is still alive.
pub fn memory(watched: &[Watched]) -> BTreeMap<String, Memory> {
    watched
        .iter()
        .filter_map(|w| {
            let status = std::fs::read_to_string(format!("{}/status", w.proc_dir())).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            };
            Some((
                w.name.clone(),
                Memory {
                    peak_rss_kib: field("VmHWM:")?,
                    rss_kib: field("VmRSS:")?,
                },
            ))
        })
        .collect()
}

/// Resets this process's peak resident set (`VmHWM`) to its current size, so that the
/// peak of one phase of a longer run can be read. Linux only; false where unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Cores, CPU model, memory and kernel, from /proc.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores (`nproc`), {model}, {mem_gib} memory, Linux {}",
        kernel.trim()
    )
}

/// utime + stime of a process, in ticks.
fn process_ticks(proc_dir: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of all CPUs together (everything but idle and iowait).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = [Watched {
            name: "self".into(),
            pid: None,
        }];
        let a = CpuSnapshot::take(&me);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let used = a.until(&CpuSnapshot::take(&me));
        if cfg!(target_os = "linux") {
            assert!(used.processes.contains_key("self"));
            assert!(memory(&me)["self"].peak_rss_kib > 0);
        }
        assert!("labstream=12".parse::<Watched>().unwrap().pid == Some(12));
        assert!("labstream".parse::<Watched>().is_err());
    }
}
