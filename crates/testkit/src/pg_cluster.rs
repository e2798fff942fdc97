//! A private PostgreSQL cluster (initdb + pg_ctl) the fault suite can crash and restart.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use crate::{free_port, Error};

/// A private PostgreSQL cluster (initdb + pg_ctl), run as the `postgres` user when we are root
/// (the server refuses root). Stopped on drop.
pub struct PgCluster {
    bindir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    pub port: u16,
    run_as: Option<String>,
    running: bool,
}

/// The highest /usr/lib/postgresql/*/bin with initdb and pg_ctl.
pub fn find_pg_bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The user the clusters run as: `postgres` when the tests run as root (PostgreSQL refuses
/// root), else the tests' own.
fn cluster_user() -> Option<&'static str> {
    is_root().then_some("postgres")
}

/// Hands `path` (recursively) to the user the clusters run as, so that a server can write what
/// the test made for it (its data directory, a WAL archive); nothing to do unless run as root.
pub fn give_to_cluster_user(path: &Path) -> Result<(), Error> {
    let Some(user) = cluster_user() else {
        return Ok(());
    };
    let out = Command::new("chown")
        .args(["-R", &format!("{user}:")])
        .arg(path)
        .output();
    checked("chown", out)
}

impl PgCluster {
    /// `pg_basebackup` of the running cluster into `target` (plain format, with the WAL it needs
    /// streamed alongside, checkpoint at once), as deploy/backup/backup.sh takes one; then
    /// `pg_verifybackup` checks it against its manifest.
    pub fn base_backup(&self, target: &Path) -> Result<(), Error> {
        let out = Command::new(self.bindir.join("pg_basebackup"))
            .arg("--dbname")
            .arg(self.url("postgres"))
            .arg("--pgdata")
            .arg(target)
            .args(["--format=plain", "--wal-method=stream", "--checkpoint=fast"])
            .args([
                "--label=whistle drill",
                "--manifest-checksums=SHA256",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output();
        checked("pg_basebackup", out)?;
        let out = Command::new(self.bindir.join("pg_verifybackup"))
            .arg(target)
            .stdin(Stdio::null())
            .output();
        checked("pg_verifybackup", out)
    }

    /// A streaming hot standby of this cluster, in `dir/pg`: `pg_basebackup --write-recovery-conf`
    /// through a new physical replication slot `slot` (so the primary keeps the WAL the standby
    /// has not received while it is down), started on a free port. It follows the primary until
    /// stopped, read-only; the primary needs `wal_level = replica` (the default) and a
    /// replication line in pg_hba.conf (initdb writes one for 127.0.0.1).
    pub async fn standby(&self, dir: &Path, slot: &str) -> Result<PgCluster, Error> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)
            .map_err(Error::io(format!("creating {}", root.display())))?;
        let out = Command::new(self.bindir.join("pg_basebackup"))
            .arg("--dbname")
            .arg(self.url("postgres"))
            .arg("--pgdata")
            .arg(root.join("data"))
            .args(["--format=plain", "--wal-method=stream", "--checkpoint=fast"])
            .args(["--write-recovery-conf", "--create-slot", "--slot", slot])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output();
        checked("pg_basebackup --write-recovery-conf", out)?;
        PgCluster::open(&self.bindir, &root).await
    }

    /// A new cluster started on a free port from a base backup ([`PgCluster::base_backup`]),
    /// copied into `dir/pg/data`: the restore of deploy/backup/restore.sh.
    pub async fn restore(bindir: &Path, backup: &Path, dir: &Path) -> Result<PgCluster, Error> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)
            .map_err(Error::io(format!("creating {}", root.display())))?;
        let out = Command::new("cp")
            .arg("-a")
            .arg(backup)
            .arg(root.join("data"))
            .stdin(Stdio::null())
            .output();
        checked("cp -a of the base backup", out)?;
        PgCluster::open(bindir, &root).await
    }

    /// A cluster started on a free port from the data directory `root/data` someone else made
    /// (deploy/backup/restore.sh's, say), its log in `root`. A data directory set to recover
    /// from archived WAL accepts connections once consistent, still replaying: wait for
    /// `pg_is_in_recovery()` to turn false before writing.
    pub async fn open(bindir: &Path, root: &Path) -> Result<PgCluster, Error> {
        let data = root.join("data");
        give_to_cluster_user(root)?;
        let out = Command::new("chmod").arg("0700").arg(&data).output();
        checked("chmod", out)?;
        let mut cluster = PgCluster {
            bindir: bindir.to_owned(),
            data,
            log: root.join("postgres.log"),
            socket_dir: root.to_owned(),
            port: free_port()?,
            run_as: cluster_user().map(str::to_owned),
            running: false,
        };
        cluster.start_again().await?;
        Ok(cluster)
    }

    /// initdb in `dir/pg` and start on a free port. fsync stays on (the default): the suite
    /// tests the configuration production runs.
    pub async fn start(bindir: &Path, dir: &Path) -> Result<PgCluster, Error> {
        PgCluster::start_with(bindir, dir, &[]).await
    }

    /// [`PgCluster::start`] with `settings` (name, value as written in `postgresql.conf`) added
    /// to the new cluster's configuration, e.g. WAL archiving.
    pub async fn start_with(
        bindir: &Path,
        dir: &Path,
        settings: &[(&str, &str)],
    ) -> Result<PgCluster, Error> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)
            .map_err(Error::io(format!("creating {}", root.display())))?;
        give_to_cluster_user(&root)?;
        let mut cluster = PgCluster {
            bindir: bindir.to_owned(),
            data: root.join("data"),
            log: root.join("postgres.log"),
            socket_dir: root.clone(),
            port: free_port()?,
            run_as: cluster_user().map(str::to_owned),
            running: false,
        };
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output();
        checked("initdb", out)?;
        if !settings.is_empty() {
            let conf = cluster.data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf)
                .map_err(Error::io(format!("reading {}", conf.display())))?;
            for (name, value) in settings {
                text.push_str(&format!("{name} = {value}\n"));
            }
            std::fs::write(&conf, text)
                .map_err(Error::io(format!("writing {}", conf.display())))?;
        }
        cluster.start_again().await?;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub async fn start_again(&mut self) -> Result<(), Error> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB",
            self.port,
            self.socket_dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output();
        checked("pg_ctl start", out)?;
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: every backend is killed without a checkpoint; the next start
    /// runs crash recovery from the WAL, as after a power cut with fsync on.
    pub fn stop_immediate(&mut self) -> Result<(), Error> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .output();
        self.running = false;
        checked("pg_ctl stop", out)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediate();
        }
    }
}

/// The output of a program that must succeed, or its stdout and stderr as the error.
fn checked(command: &str, output: std::io::Result<Output>) -> Result<(), Error> {
    let output = output.map_err(Error::io(format!("running {command}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::PgCtl {
        command: command.to_owned(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
