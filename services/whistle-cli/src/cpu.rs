//! CPU time of this machine's processes by group (nats-server, dispatch, query, PostgreSQL, and
//! this process), from `/proc`, for `whistle load --cpu`: what a report costs every process that
//! handles it, not only the one being profiled. Linux only; elsewhere nothing is measured.

use std::collections::BTreeMap;

use serde::Serialize;

/// The groups a process is counted in, by its command name (`/proc/PID/comm`).
fn group(comm: &str) -> Option<&'static str> {
    match comm {
        "nats-server" => Some("nats-server"),
        "whistle-dispatc" | "whistle-dispatch" => Some("dispatch"),
        "whistle-query" => Some("query"),
        "postgres" => Some("postgres"),
        _ => None,
    }
}

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`: 100 on every Linux Whistle runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks (user + system) per process, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// pid → (group, ticks).
    processes: BTreeMap<u32, (&'static str, u64)>,
}

/// One process's `utime + stime` from the text of `/proc/PID/stat`.
fn ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Every process of this machine: its pid and its `/proc` directory (none if `/proc` is unreadable).
pub fn running() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

impl Snapshot {
    /// The processes of the groups running now, and this one (group "load generator").
    pub fn take() -> Snapshot {
        Snapshot::take_as("load generator")
    }

    /// The processes of the groups running now, and this one as group `me`.
    pub fn take_as(me: &'static str) -> Snapshot {
        let mut processes = BTreeMap::new();
        let own = std::process::id();
        for (pid, dir) in running() {
            let group = if pid == own {
                me
            } else {
                match std::fs::read_to_string(dir.join("comm"))
                    .ok()
                    .and_then(|c| group(c.trim()))
                {
                    Some(group) => group,
                    None => continue,
                }
            };
            if let Some(t) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
            {
                processes.insert(pid, (group, t));
            }
        }
        Snapshot { processes }
    }

    /// CPU microseconds each group spent between `self` and `later`, per `reports`. A process
    /// that started in between counts from zero; one that ended is lost (PostgreSQL's backends
    /// live as long as the services' pools).
    pub fn per_report(&self, later: &Snapshot, reports: u64) -> CpuPerReport {
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (pid, (group, t1)) in &later.processes {
            let t0 = self
                .processes
                .get(pid)
                .filter(|(g, _)| g == group)
                .map_or(0, |(_, t)| *t);
            *groups.entry((*group).to_owned()).or_default() += t1.saturating_sub(t0) as f64;
        }
        let per = |ticks: f64| ticks / TICKS_PER_SECOND * 1e6 / reports.max(1) as f64;
        let groups: BTreeMap<String, f64> = groups.into_iter().map(|(g, t)| (g, per(t))).collect();
        CpuPerReport {
            total_us: groups.values().sum(),
            by_process_us: groups,
        }
    }
}

/// CPU microseconds a report cost, by process group and in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuPerReport {
    pub by_process_us: BTreeMap<String, f64>,
    pub total_us: f64,
}

impl std::fmt::Display for CpuPerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} µs a report", self.total_us)?;
        let parts: Vec<String> = self
            .by_process_us
            .iter()
            .map(|(g, us)| format!("{g} {us:.1}"))
            .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (whistle (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 9 0";
        assert_eq!(ticks(stat), Some(175));
        assert_eq!(ticks("garbage"), None);
    }

    #[test]
    fn each_group_is_charged_what_its_processes_spent_per_report() {
        let before = Snapshot {
            processes: BTreeMap::from([(1, ("postgres", 100)), (2, ("nats-server", 50))]),
        };
        let after = Snapshot {
            processes: BTreeMap::from([
                (1, ("postgres", 300)),
                (2, ("nats-server", 150)),
                // A backend that started during the run.
                (3, ("postgres", 100)),
            ]),
        };
        let cost = before.per_report(&after, 10_000);
        // 300 ticks = 3 s over 10,000 reports = 300 µs.
        assert_eq!(cost.by_process_us["postgres"], 300.0);
        assert_eq!(cost.by_process_us["nats-server"], 100.0);
        assert_eq!(cost.total_us, 400.0);
        assert_eq!(
            cost.to_string(),
            "400.0 µs a report (nats-server 100.0, postgres 300.0)"
        );
    }

    #[test]
    fn this_process_is_always_in_a_snapshot_on_linux() {
        if cfg!(target_os = "linux") {
            let now = Snapshot::take();
            assert!(now
                .processes
                .get(&std::process::id())
                .is_some_and(|(g, _)| *g == "load generator"));
        }
    }
}
