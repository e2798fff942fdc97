//! The dispatch replicas: child processes the run starts, kills, pauses and restarts.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::Launcher;

/// One dispatch replica slot.
pub(super) struct Replica {
    /// How this slot's process starts: the old or the new version in an upgrade.
    pub(super) launcher: Launcher,
    pub(super) child: Option<Child>,
    /// Should be running (the supervisor restarts it if it exits).
    pub(super) wanted: bool,
    pub(super) paused: bool,
}

pub(super) struct Fleet {
    pub(super) env: Vec<(String, String)>,
    pub(super) log_dir: PathBuf,
    pub(super) replicas: Vec<Replica>,
    pub(super) starts: u32,
    pub(super) unexpected_exits: u32,
}

impl Fleet {
    /// A new, empty slot started by `launcher`; its index.
    pub(super) fn add(&mut self, launcher: Launcher) -> usize {
        self.replicas.push(Replica {
            launcher,
            child: None,
            wanted: false,
            paused: false,
        });
        self.replicas.len() - 1
    }

    pub(super) fn log_path(&self, i: usize) -> PathBuf {
        self.log_dir.join(format!("dispatch-{i}.log"))
    }

    pub(super) fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let launcher = &self.replicas[i].launcher;
        let child = Command::new(&launcher.program)
            .args(&launcher.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(launcher.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", launcher.program.display()))?;
        self.replicas[i].child = Some(child);
        self.replicas[i].wanted = true;
        self.starts += 1;
        Ok(())
    }

    pub(super) fn kill9(&mut self, i: usize) -> Option<u32> {
        let child = self.replicas[i].child.as_mut()?;
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        self.replicas[i].child = None;
        Some(pid)
    }

    pub(super) fn signal(&self, i: usize, signal: &str) -> Option<u32> {
        let pid = self.replicas[i].child.as_ref()?.id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(pid)
    }

    /// Restarts replicas that should run and exited on their own.
    pub(super) fn supervise(&mut self) {
        for i in 0..self.replicas.len() {
            let replica = &mut self.replicas[i];
            if !replica.wanted || replica.paused {
                continue;
            }
            let exited = match replica.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten().is_some(),
                None => true,
            };
            if exited {
                replica.child = None;
                self.unexpected_exits += 1;
                let _ = self.spawn(i);
            }
        }
    }

    /// SIGTERM, then up to `timeout` for a clean exit, then SIGKILL. Whether it exited on its
    /// own with status 0 within the timeout (None if it was not running).
    pub(super) fn terminate(&mut self, i: usize, timeout: Duration) -> Option<bool> {
        self.replicas[i].wanted = false;
        if self.replicas[i].paused {
            self.signal(i, "CONT");
            self.replicas[i].paused = false;
        }
        self.signal(i, "TERM")?;
        let deadline = Instant::now() + timeout;
        let mut clean = false;
        if let Some(child) = self.replicas[i].child.as_mut() {
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().ok().flatten() {
                    clean = status.success();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.replicas[i].child = None;
        Some(clean)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            if self.replicas[i].paused {
                self.signal(i, "CONT");
            }
            self.kill9(i);
        }
    }
}

pub(super) fn lock(fleet: &Mutex<Fleet>) -> std::sync::MutexGuard<'_, Fleet> {
    fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
