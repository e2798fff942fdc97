//! The deployment's NATS administration: `whistle nats-config` renders the nats-server
//! configuration from the deployment's secrets (created on first use), and `whistle streams`
//! creates or updates the hardened `WHISTLE_*` streams as the admin identity, at the replica
//! count and placement a cluster wants — or, on a province's hub, the stream that sources every
//! city's events (`--province-sources`).

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream::ClusterInfo};
use whistle_auth::{
    streams::{self, HardenedOptions, MAX_REPLICAS},
    Cluster, LeafHub, LeafRemote, RouteTls, Secrets, ServerConfig, Tls,
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
    /// The monitoring port (`/varz`, `/connz`, `/jsz`), if wanted.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// This node's name, unique in its cluster (required with --cluster-name).
    #[arg(long)]
    pub server_name: Option<String>,
    /// A tag of this node that `whistle streams --placement-tag` can require (repeatable).
    #[arg(long = "server-tag", value_name = "TAG")]
    pub server_tags: Vec<String>,
    /// Make this node part of the NATS cluster of this name (the same on every node); its
    /// routes authenticate with the password in the secrets directory (route.password), which
    /// every node must share.
    #[arg(long, requires_all = ["server_name", "cluster_port"])]
    pub cluster_name: Option<String>,
    /// The port this node listens on for routes from the others (on --host).
    #[arg(long, requires = "cluster_name")]
    pub cluster_port: Option<u16>,
    /// Another node's route address, HOST:PORT (repeatable; listing this node too is harmless).
    #[arg(long = "route", value_name = "HOST:PORT", requires = "cluster_name")]
    pub routes: Vec<String>,
    /// TLS on routes, each end verifying the other: this node's certificate (PEM; it must name
    /// the address the others dial and allow both server and client use)…
    #[arg(long, requires_all = ["cluster_name", "cluster_tls_key", "cluster_tls_ca"])]
    pub cluster_tls_cert: Option<PathBuf>,
    /// …its private key (PEM)…
    #[arg(long, requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,
    /// …and the CA certificate that signed every node's.
    #[arg(long, requires = "cluster_tls_cert")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// This server's JetStream domain (a province's hub or a city joined to it): its JetStream
    /// API is then also `$JS.<domain>.API`, which is how the hub sources the city's events.
    /// Letters, digits, `-` and `_`; the same on every node of a city's cluster.
    #[arg(long, value_name = "NAME")]
    pub jetstream_domain: Option<String>,
    /// On a province's hub: accept the cities' leaf connections on this port (on --host), bound
    /// to the WHISTLE account and authenticated with the password in the secrets directory
    /// (leaf.password), which every city must be given.
    #[arg(long, value_name = "PORT", requires = "jetstream_domain")]
    pub leafnode_port: Option<u16>,
    /// On a city: the hub's leaf address, HOST:PORT or nats-leaf://HOST:PORT (repeatable, one per
    /// hub node). The city presents the hub's leaf.password, copied into its own secrets
    /// directory.
    #[arg(
        long = "leafnode-remote",
        value_name = "URL",
        requires = "jetstream_domain"
    )]
    pub leafnode_remotes: Vec<String>,
    /// TLS on the leaf links, each end verifying the other, with --leafnode-port or
    /// --leafnode-remote: this server's certificate (PEM; a hub's must name the address the
    /// cities dial, a city's must allow client use)…
    #[arg(long, requires_all = ["leafnode_tls_key", "leafnode_tls_ca"])]
    pub leafnode_tls_cert: Option<PathBuf>,
    /// …its private key (PEM)…
    #[arg(long, requires = "leafnode_tls_cert")]
    pub leafnode_tls_key: Option<PathBuf>,
    /// …and the CA certificate that signed the hub's and every city's.
    #[arg(long, requires = "leafnode_tls_cert")]
    pub leafnode_tls_ca: Option<PathBuf>,
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
    config.server_name = args.server_name.clone();
    config.server_tags = args.server_tags.clone();
    if let (Some(name), Some(port)) = (&args.cluster_name, args.cluster_port) {
        let routes = args
            .routes
            .iter()
            .map(|route| route_address(route))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match (
            &args.cluster_tls_cert,
            &args.cluster_tls_key,
            &args.cluster_tls_ca,
        ) {
            (Some(cert), Some(key), Some(ca)) => Some(RouteTls {
                cert_file: absolute(cert)?,
                key_file: absolute(key)?,
                ca_file: absolute(ca)?,
            }),
            _ => None,
        };
        config.cluster = Some(Cluster {
            name: name.clone(),
            host: args.host.clone(),
            port,
            routes,
            password: secrets.route_password.clone(),
            tls,
        });
    }
    if let Some(domain) = &args.jetstream_domain {
        anyhow::ensure!(
            streams::valid_domain(domain),
            "--jetstream-domain {domain:?}: letters, digits, - and _ only (it becomes a subject token)"
        );
        config.jetstream_domain = Some(domain.clone());
    }
    let leaf_tls = match (
        &args.leafnode_tls_cert,
        &args.leafnode_tls_key,
        &args.leafnode_tls_ca,
    ) {
        (Some(cert), Some(key), Some(ca)) => {
            anyhow::ensure!(
                args.leafnode_port.is_some() || !args.leafnode_remotes.is_empty(),
                "--leafnode-tls-cert needs --leafnode-port (a hub) or --leafnode-remote (a city)"
            );
            Some(RouteTls {
                cert_file: absolute(cert)?,
                key_file: absolute(key)?,
                ca_file: absolute(ca)?,
            })
        }
        _ => None,
    };
    if let Some(port) = args.leafnode_port {
        config.leaf_hub = Some(LeafHub {
            host: args.host.clone(),
            port,
            password: secrets.leaf_password.clone(),
            tls: leaf_tls.clone(),
        });
    }
    if !args.leafnode_remotes.is_empty() {
        config.leaf_remote = Some(LeafRemote {
            urls: args
                .leafnode_remotes
                .iter()
                .map(|url| leaf_address(url))
                .collect::<anyhow::Result<Vec<_>>>()?,
            password: secrets.leaf_password.clone(),
            tls: leaf_tls,
        });
    }
    let text = config.render();
    let Some(output) = &args.output else {
        return Ok(text);
    };
    write_private(output, &text)?;
    Ok(String::new())
}

/// A route as `host:port`: a `nats-route://` prefix is dropped, credentials are refused (the
/// rendered configuration adds the cluster's own).
fn route_address(route: &str) -> anyhow::Result<String> {
    let address = route.strip_prefix("nats-route://").unwrap_or(route);
    anyhow::ensure!(
        !address.contains('@'),
        "--route {route}: give HOST:PORT only; the routes' credentials come from the secrets \
         directory (route.password)"
    );
    let port = address
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port));
    anyhow::ensure!(
        port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)),
        "--route {route}: expected HOST:PORT, e.g. 10.77.0.12:6222"
    );
    Ok(address.to_owned())
}

/// A hub's leaf address as `host:port`: a `nats-leaf://` prefix is dropped, credentials are
/// refused (the rendered configuration adds the leaf password from the secrets).
fn leaf_address(url: &str) -> anyhow::Result<String> {
    let address = url.strip_prefix("nats-leaf://").unwrap_or(url);
    anyhow::ensure!(
        !address.contains('@'),
        "--leafnode-remote {url}: give HOST:PORT only; the password comes from the secrets \
         directory (leaf.password, copied from the hub's)"
    );
    let port = address
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port));
    anyhow::ensure!(
        port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)),
        "--leafnode-remote {url}: expected HOST:PORT, e.g. hub.province.example:7422"
    );
    Ok(address.to_owned())
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
    /// Bytes WHISTLE_REPORTS may hold, in GiB (a day of raw reports; when full new reports are
    /// refused, never old ones dropped).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub report_max_gib: u32,
    /// Bytes WHISTLE_EVENTS may hold, in GiB (30 days of events).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_max_gib: u32,
    /// Bytes WHISTLE_REJECTED may hold, in GiB (90 days of rejected reports). JetStream reserves
    /// every stream's bound on the disk of each server holding a copy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rejected_max_gib: u32,
    /// Copies of every stream in a JetStream cluster (1 to 5; 3 survives the loss of a node).
    /// Without it existing streams keep their count and new ones get 1, the single server's.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=MAX_REPLICAS as i64))]
    pub replicas: Option<u8>,
    /// Place every copy on servers with this tag (`whistle nats-config --server-tag`;
    /// repeatable, all required). Without it existing streams keep their placement.
    #[arg(long = "placement-tag", value_name = "TAG")]
    pub placement_tags: Vec<String>,
    /// On a province's hub: create or update only WHISTLE_PROVINCE_EVENTS, sourcing the
    /// WHISTLE_EVENTS of each city's JetStream domain (comma-separated, e.g. ordos,hohhot; the
    /// cities are the hub's leaf nodes). Bounded at --event-max-gib per city.
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    pub province_sources: Vec<String>,
}

/// Creates or updates the streams and says what it did.
pub async fn streams(conn: &Connection, args: &StreamsArgs) -> anyhow::Result<()> {
    if let Some(bad) = args
        .province_sources
        .iter()
        .find(|d| !streams::valid_domain(d))
    {
        anyhow::bail!(
            "--province-sources: {bad:?} is not a JetStream domain (letters, digits, - and _ only)"
        );
    }
    let client = door::nats_admin(conn).await?;
    let js = jetstream::new(client);
    let options = HardenedOptions {
        photo_max_bytes: gib(args.photo_max_gib.max(1)),
        report_max_bytes: gib(args.report_max_gib),
        event_max_bytes: gib(args.event_max_gib),
        rejected_max_bytes: gib(args.rejected_max_gib),
        replicas: args.replicas.map(usize::from),
        placement_tags: args.placement_tags.clone(),
        ..HardenedOptions::default()
    };
    if !args.province_sources.is_empty() {
        let name = whistle_wire::names::PROVINCE_EVENTS_STREAM;
        let existed = js.get_stream(name).await.is_ok();
        streams::ensure_province(&js, &options, &args.province_sources)
            .await
            .context(
                "creating the province's stream (is --nats-nkey-file the hub admin's seed?)",
            )?;
        let mut stream = js
            .get_stream(name)
            .await
            .with_context(|| format!("reading stream {name} back"))?;
        let info = stream
            .info()
            .await
            .with_context(|| format!("reading stream {name} back"))?;
        println!(
            "{} · {}",
            describe(&info.config, existed),
            copies(&info.config, info.cluster.as_ref())
        );
        // What JetStream still has to copy from the cities (a city whose link is down
        // shows its events waiting there; one never heard from is unreachable or not linked yet).
        let behind: u64 = info.sources.iter().map(|s| s.lag).sum();
        let heard = info.sources.iter().filter(|s| s.active.is_some()).count();
        println!(
            "  {} sources ({heard} heard from so far), {behind} events still to copy",
            info.sources.len()
        );
        return Ok(());
    }
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
        // What JetStream now runs: the replica count kept or set, and who holds the copies.
        let mut stream = js
            .get_stream(&config.name)
            .await
            .with_context(|| format!("reading stream {} back", config.name))?;
        let info = stream
            .info()
            .await
            .with_context(|| format!("reading stream {} back", config.name))?;
        println!(
            "{} · {}",
            describe(&info.config, existed),
            copies(&info.config, info.cluster.as_ref())
        );
    }
    Ok(())
}

fn gib(n: u32) -> i64 {
    i64::from(n) * 1024 * 1024 * 1024
}

/// Where the copies are: `1 copy` on a single server, else e.g. `3 copies: leader n1, n2
/// current, n3 catching up` (a copy just added catches up from the leader).
fn copies(config: &jetstream::stream::Config, cluster: Option<&ClusterInfo>) -> String {
    let n = config.num_replicas.max(1);
    let mut line = if n == 1 {
        "1 copy".to_owned()
    } else {
        format!("{n} copies")
    };
    if let Some(tags) = config.placement.as_ref().map(|p| &p.tags) {
        if !tags.is_empty() {
            line.push_str(&format!(" on servers tagged {}", tags.join(", ")));
        }
    }
    let Some(cluster) = cluster.filter(|c| c.leader.is_some() || !c.replicas.is_empty()) else {
        return line;
    };
    let mut parts = vec![format!(
        "leader {}",
        cluster.leader.as_deref().unwrap_or("being elected")
    )];
    for peer in &cluster.replicas {
        parts.push(format!(
            "{} {}",
            peer.name,
            if peer.offline {
                "offline"
            } else if peer.current {
                "current"
            } else {
                "catching up"
            }
        ));
    }
    format!("{line}: {}", parts.join(", "))
}

/// One line per stream, e.g. `created WHISTLE_REPORTS: whistle.report.> · 7d · 4096 MiB …`.
fn describe(config: &jetstream::stream::Config, existed: bool) -> String {
    let days = config.max_age.as_secs_f64() / 86_400.0;
    format!(
        "{} {}: {} · kept {} · at most {} MiB, messages up to {} KiB · {} denied",
        if existed { "updated" } else { "created" },
        config.name,
        if config.subjects.is_empty() {
            format!(
                "sourced from {}",
                config
                    .sources
                    .iter()
                    .flatten()
                    .map(|s| s
                        .external
                        .as_ref()
                        .map_or(s.name.as_str(), |e| e.api_prefix.as_str()))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        } else {
            config.subjects.join(" ")
        },
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
            server_name: None,
            server_tags: Vec::new(),
            cluster_name: None,
            cluster_port: None,
            routes: Vec::new(),
            cluster_tls_cert: None,
            cluster_tls_key: None,
            cluster_tls_ca: None,
            jetstream_domain: None,
            leafnode_port: None,
            leafnode_remotes: Vec::new(),
            leafnode_tls_cert: None,
            leafnode_tls_key: None,
            leafnode_tls_ca: None,
            output: None,
        }
    }

    #[test]
    fn a_hub_and_a_city_share_the_hubs_leaf_password() {
        let dir = temp_dir();
        let mut hub = args(&dir);
        hub.jetstream_domain = Some("province".into());
        hub.leafnode_port = Some(7422);
        let text = nats_config(&hub).unwrap();
        let password = Secrets::load_or_create(&dir.join("secrets"))
            .unwrap()
            .leaf_password;
        assert!(text.contains(&format!("password: \"{password}\"\n    account: WHISTLE")));
        assert!(text.contains("domain: \"province\""));

        // The city's own secrets, with the hub's leaf.password copied in.
        let city_dir = dir.join("city");
        let mut city = args(&city_dir);
        Secrets::load_or_create(&city.secrets).unwrap();
        std::fs::write(city.secrets.join("leaf.password"), format!("{password}\n")).unwrap();
        city.jetstream_domain = Some("ordos".into());
        city.leafnode_remotes = vec!["nats-leaf://hub.example:7422".into()];
        let text = nats_config(&city).unwrap();
        assert!(
            text.contains(&format!(
                "nats-leaf://whistle-leaf:{password}@hub.example:7422"
            )),
            "{text}"
        );
        assert!(text.contains("\"$JS.ordos.API.STREAM.>\""));
        city.leafnode_tls_cert = Some("certs/ordos.crt".into());
        city.leafnode_tls_key = Some("certs/ordos.key".into());
        city.leafnode_tls_ca = Some("certs/ca.crt".into());
        let text = nats_config(&city).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(text.contains(&format!(
            "cert_file: \"{}\"",
            cwd.join("certs/ordos.crt").display()
        )));
        city.leafnode_remotes.clear();
        city.jetstream_domain = Some("ordos".into());
        let error = nats_config(&city).unwrap_err().to_string();
        assert!(error.contains("--leafnode-port (a hub)"), "{error}");
        city.leafnode_remotes = vec!["hub.example:7422".into()];

        city.jetstream_domain = Some("ordos.city".into());
        let error = nats_config(&city).unwrap_err().to_string();
        assert!(error.contains("letters, digits"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_leaf_remote_is_host_and_port_without_credentials() {
        assert_eq!(leaf_address("10.1.0.2:7422").unwrap(), "10.1.0.2:7422");
        assert_eq!(
            leaf_address("nats-leaf://hub.example:7422").unwrap(),
            "hub.example:7422"
        );
        let error = leaf_address("nats-leaf://u:p@hub:7422").unwrap_err();
        assert!(error.to_string().contains("leaf.password"), "{error}");
        for bad in ["hub", ":7422", "hub:0", "hub:port"] {
            assert!(leaf_address(bad).is_err(), "{bad}");
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

    #[test]
    fn the_copies_and_their_state_are_named() {
        let [mut reports, ..] = streams::configs(&HardenedOptions::default());
        assert_eq!(copies(&reports, None), "1 copy");
        reports.num_replicas = 3;
        reports.placement = Some(jetstream::stream::Placement {
            cluster: None,
            tags: vec!["dc:a".into()],
        });
        let cluster: ClusterInfo = serde_json::from_value(serde_json::json!({
            "name": "whistle",
            "leader": "n1",
            "replicas": [
                {"name": "n2", "current": true, "active": 1000},
                {"name": "n3", "current": false, "active": 1000},
                {"name": "n4", "current": false, "offline": true, "active": 1000}
            ]
        }))
        .unwrap();
        assert_eq!(
            copies(&reports, Some(&cluster)),
            "3 copies on servers tagged dc:a: leader n1, n2 current, n3 catching up, n4 offline"
        );
    }

    #[test]
    fn a_route_is_host_and_port_without_credentials() {
        assert_eq!(route_address("10.77.0.12:6222").unwrap(), "10.77.0.12:6222");
        assert_eq!(
            route_address("nats-route://n2.example:6222").unwrap(),
            "n2.example:6222"
        );
        let error = route_address("nats-route://u:p@n2:6222").unwrap_err();
        assert!(error.to_string().contains("route.password"), "{error}");
        for bad in ["n2", ":6222", "n2:0", "n2:port"] {
            assert!(route_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cluster_node_is_rendered_with_the_secrets_route_password() {
        let dir = temp_dir();
        let mut args = args(&dir);
        args.host = "10.77.0.11".into();
        args.server_name = Some("n1".into());
        args.cluster_name = Some("whistle".into());
        args.cluster_port = Some(6222);
        args.routes = vec!["10.77.0.12:6222".into(), "10.77.0.13:6222".into()];
        let text = nats_config(&args).unwrap();
        let secrets = Secrets::load_or_create(&dir.join("secrets")).unwrap();
        assert!(text.contains("server_name: \"n1\""));
        assert!(text.contains("listen: \"10.77.0.11:6222\""));
        assert!(text.contains(&format!(
            "\"nats-route://whistle-route:{}@10.77.0.12:6222\"",
            secrets.route_password
        )));
        assert!(text.contains(&format!("password: \"{}\"", secrets.route_password)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
