//! The deployment's NATS administration: `whistle nats-config` renders the nats-server
//! configuration from the deployment's secrets (created on first use), and `whistle streams`
//! creates or updates the hardened `WHISTLE_*` streams as the admin identity.

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use async_nats::jetstream;
use whistle_auth::{
    streams::{self, HardenedOptions},
    Secrets, ServerConfig, Tls,
};

use crate::{door, Connection};

#[derive(Debug, clap::Args)]
pub struct NatsConfigArgs {
    /// Directory of the deployment's secrets (mode 0700); missing keys are created.
    #[arg(long)]
    pub secrets: PathBuf,
    /// The client port.
    #[arg(long)]
    pub port: u16,
    /// JetStream's store directory.
    #[arg(long)]
    pub store_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TLS on client connections: the server certificate (PEM)…
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// …and its private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The monitoring port (`/varz`, `/connz`), if wanted.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Write the configuration to this file (mode 0600: it holds JetStream's key) instead of
    /// printing it.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// nats-server reads paths relative to its own working directory; the config names them whole.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The configuration's text, after loading or creating the secrets; written to `--output` if
/// given (then the text returned is empty).
pub fn nats_config(args: &NatsConfigArgs) -> anyhow::Result<String> {
    let secrets = Secrets::load_or_create(&args.secrets)
        .with_context(|| format!("the secrets in {}", args.secrets.display()))?;
    let mut config = ServerConfig::new(&secrets, &args.host, args.port, absolute(&args.store_dir)?);
    config.http_port = args.http_port;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(Tls {
            cert_file: absolute(cert)?,
            key_file: absolute(key)?,
        });
    }
    let text = config.render();
    let Some(output) = &args.output else {
        return Ok(text);
    };
    write_private(output, &text)?;
    Ok(String::new())
}

/// Writes `text` to `path`, readable by its owner only (an existing file is replaced).
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    /// Bytes the photo bucket WHISTLE_PHOTOS may hold, in GiB; when full it refuses new photos.
    /// Photos are kept with their incidents: at about 300 KiB a photo, 8 GiB holds some 28,000.
    /// JetStream reserves it on the server's disk like every stream's bound.
    #[arg(long, default_value_t = 8)]
    pub photo_max_gib: u32,
}

/// Creates or updates the streams and says what it did.
pub async fn streams(conn: &Connection, args: &StreamsArgs) -> anyhow::Result<()> {
    let client = door::nats_admin(conn).await?;
    let js = jetstream::new(client);
    let options = HardenedOptions {
        photo_max_bytes: i64::from(args.photo_max_gib.max(1)) * 1024 * 1024 * 1024,
        ..HardenedOptions::default()
    };
    let all: Vec<_> = streams::configs(&options)
        .into_iter()
        .chain([streams::photos_config(&options)])
        .collect();
    let mut existed = Vec::new();
    for config in &all {
        existed.push(js.get_stream(&config.name).await.is_ok());
    }
    streams::ensure(&js, &options)
        .await
        .context("creating the streams (is --nats-nkey-file the admin's seed?)")?;
    for (config, existed) in all.iter().zip(existed) {
        println!("{}", describe(config, existed));
    }
    Ok(())
}

/// One line per stream, e.g. `created WHISTLE_REPORTS: whistle.report.> · 7d · 4096 MiB …`.
fn describe(config: &jetstream::stream::Config, existed: bool) -> String {
    let days = config.max_age.as_secs_f64() / 86_400.0;
    format!(
        "{} {}: {} · kept {} · at most {} MiB, messages up to {} KiB · {} denied",
        if existed { "updated" } else { "created" },
        config.name,
        config.subjects.join(" "),
        if days > 0.0 {
            format!("{days}d")
        } else {
            "until full".to_owned()
        },
        config.max_bytes / (1024 * 1024),
        config.max_message_size / 1024,
        if config.deny_purge {
            "delete and purge"
        } else {
            "delete"
        },
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("whistle-cli-admin-{}", uuid::Uuid::now_v7()))
    }

    fn args(dir: &Path) -> NatsConfigArgs {
        NatsConfigArgs {
            secrets: dir.join("secrets"),
            port: 14222,
            store_dir: dir.join("js"),
            host: "127.0.0.1".into(),
            tls_cert: None,
            tls_key: None,
            http_port: None,
            output: None,
        }
    }

    #[test]
    fn the_config_is_made_from_the_secrets_and_stays_the_same_on_a_rerun() {
        let dir = temp_dir();
        let first = nats_config(&args(&dir)).unwrap();
        let secrets = Secrets::load_or_create(&dir.join("secrets")).unwrap();
        assert!(first.contains(&secrets.issuer.public_key()));
        assert!(first.contains(&secrets.admin.public_key()));
        assert!(first.contains("port: 14222"));
        assert!(first.contains(&format!("store_dir: \"{}\"", dir.join("js").display())));
        assert!(!first.contains("tls {"));
        assert_eq!(nats_config(&args(&dir)).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_paths_are_made_absolute_and_the_output_file_is_private() {
        let dir = temp_dir();
        let output = dir.join("nats.conf");
        let mut args = args(&dir);
        args.tls_cert = Some("certs/server.crt".into());
        args.tls_key = Some("certs/server.key".into());
        args.output = Some(output.clone());
        assert_eq!(nats_config(&args).unwrap(), "");
        let text = std::fs::read_to_string(&output).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(text.contains(&format!(
            "cert_file: \"{}\"",
            cwd.join("certs/server.crt").display()
        )));
        assert!(text.contains("cipher: chachapoly"));
        let mode = std::fs::metadata(&output).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stream_line_says_what_happened_and_its_bounds() {
        let [reports, ..] = streams::configs(&HardenedOptions::default());
        let line = describe(&reports, false);
        assert!(
            line.starts_with("created WHISTLE_REPORTS: whistle.report.> · kept 1d"),
            "{line}"
        );
        assert!(
            line.contains("at most 4096 MiB, messages up to 1024 KiB"),
            "{line}"
        );
        assert!(describe(&reports, true).starts_with("updated "));
    }
}
