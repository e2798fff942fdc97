//! The nats-server (≥ 2.10) configuration of a deployment, rendered from one struct: three
//! accounts (`AUTH` with the callout's user, `WHISTLE` with JetStream and every application
//! connection, `SYS`), the services as static nkey users with their permissions, and the
//! `auth_callout` block through which every other connection is authorized; and, for a node of a
//! JetStream cluster, its name, tags and the `cluster` block with routes that authenticate (a
//! shared password from the secrets, TLS with verified certificates when given); and, for a
//! province, the JetStream domain and the leaf node links between a provincial hub and its
//! cities (docs/operations.md, "A province: cities as leaf nodes").

use std::{fmt::Write as _, path::PathBuf};

use crate::{
    permissions::{service_permissions, Service, StaticPermissions, StreamNames},
    secrets::Secrets,
};

/// The account every person, device and service works in.
pub const APP_ACCOUNT: &str = "WHISTLE";
/// The account of the callout service alone, so no application connection sees credential traffic.
pub const AUTH_ACCOUNT: &str = "AUTH";
pub const SYSTEM_ACCOUNT: &str = "SYS";

/// Certificate and key for TLS on client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The user every node presents on its routes (with [`Secrets::route_password`]).
pub const ROUTE_USER: &str = "whistle-route";

/// Certificate, key and the CA that signs every node's certificate, for TLS on routes: each end
/// verifies the other (`verify: true`), so a certificate needs both the server and the client
/// key usage, and the addresses routes dial among its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// This node's place in a NATS cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The same on every node.
    pub name: String,
    /// Where this node listens for routes (the client host when the CLI renders it).
    pub host: String,
    pub port: u16,
    /// The other nodes' route addresses, `host:port` (credentials are added when rendered).
    pub routes: Vec<String>,
    /// Shared by every node ([`Secrets::route_password`]).
    pub password: String,
    pub tls: Option<RouteTls>,
}

/// The user a city presents on its leaf connection to the hub (with [`Secrets::leaf_password`]).
pub const LEAF_USER: &str = "whistle-leaf";

/// A provincial hub accepting its cities' leaf connections, bound to the [`APP_ACCOUNT`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeafHub {
    /// Where the hub listens for leaf connections (the client host when the CLI renders it).
    pub host: String,
    pub port: u16,
    /// Shared with every city ([`Secrets::leaf_password`], copied into each city's secrets).
    pub password: String,
    /// TLS on the links, the hub verifying each city's certificate against the CA.
    pub tls: Option<RouteTls>,
}

/// A city's link to its province's hub: the city's [`APP_ACCOUNT`] joins the hub's, except for
/// the subjects denied in both directions ([`leaf_denials`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LeafRemote {
    /// The hub's leaf addresses, `host:port` (credentials are added when rendered).
    pub urls: Vec<String>,
    /// The hub's leaf password.
    pub password: String,
    /// TLS on the link: the city's certificate (which the hub verifies) and the CA that signed
    /// the hub's.
    pub tls: Option<RouteTls>,
}

/// Everything the rendered configuration depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// The monitoring endpoint (`/varz`, `/connz`), if wanted.
    pub http_port: Option<u16>,
    pub store_dir: PathBuf,
    pub tls: Option<Tls>,
    /// JetStream encryption at rest (`cipher: chachapoly`) with this key.
    pub jetstream_key: Option<String>,
    /// The server-wide ceiling on a message's size; per-person limits come from the callout.
    pub max_payload: u32,
    pub max_connections: Option<u32>,
    /// Seconds a client (and so the callout) has to authenticate.
    pub auth_timeout_secs: f64,
    /// Public key of the account nkey that signs the callout's answers.
    pub issuer: String,
    /// The static service users, by public key.
    pub services: Vec<(Service, String)>,
    pub streams: StreamNames,
    /// The node's name, unique in its cluster (JetStream's Raft groups name their peers by it).
    pub server_name: Option<String>,
    /// Tags that stream placement can require (`whistle streams --placement-tag`).
    pub server_tags: Vec<String>,
    /// Set for a node of a cluster (then `server_name` must be too).
    pub cluster: Option<Cluster>,
    /// The JetStream domain: a city's (or the province's) own, so its API is also reachable as
    /// `$JS.{domain}.API` across leaf connections. Required with `leaf_remote`.
    pub jetstream_domain: Option<String>,
    /// Set on a provincial hub.
    pub leaf_hub: Option<LeafHub>,
    /// Set on a city joined to a hub.
    pub leaf_remote: Option<LeafRemote>,
}

impl ServerConfig {
    /// A configuration for `secrets` with defaults: all four services, encryption at rest on,
    /// no TLS, 1 MiB messages.
    pub fn new(secrets: &Secrets, host: &str, port: u16, store_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            host: host.into(),
            port,
            http_port: None,
            store_dir,
            tls: None,
            jetstream_key: Some(secrets.jetstream_key.clone()),
            max_payload: 1024 * 1024,
            max_connections: None,
            auth_timeout_secs: 5.0,
            issuer: secrets.issuer.public_key(),
            services: Service::ALL
                .into_iter()
                .map(|s| (s, secrets.service(s).public_key()))
                .collect(),
            streams: StreamNames::default(),
            server_name: None,
            server_tags: Vec::new(),
            cluster: None,
            jetstream_domain: None,
            leaf_hub: None,
            leaf_remote: None,
        }
    }

    /// The configuration file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let q = quote;
        let _ = writeln!(
            out,
            "# Generated by whistle-auth (crates/auth/src/config.rs); regenerate rather than edit."
        );
        if let Some(name) = &self.server_name {
            let _ = writeln!(out, "server_name: {}", q(name));
        }
        if !self.server_tags.is_empty() {
            let tags: Vec<String> = self.server_tags.iter().map(|t| q(t)).collect();
            let _ = writeln!(out, "server_tags: [{}]", tags.join(", "));
        }
        let _ = writeln!(out, "host: {}", q(&self.host));
        let _ = writeln!(out, "port: {}", self.port);
        if let Some(http_port) = self.http_port {
            let _ = writeln!(out, "http_port: {http_port}");
        }
        let _ = writeln!(out, "max_payload: {}", self.max_payload);
        if let Some(max) = self.max_connections {
            let _ = writeln!(out, "max_connections: {max}");
        }
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                out,
                "tls {{\n  cert_file: {}\n  key_file: {}\n}}",
                q(&tls.cert_file.display().to_string()),
                q(&tls.key_file.display().to_string())
            );
        }
        if let Some(cluster) = &self.cluster {
            render_cluster(&mut out, cluster);
        }
        if self.leaf_hub.is_some() || self.leaf_remote.is_some() {
            self.render_leafnodes(&mut out);
        }
        let _ = writeln!(out, "jetstream {{");
        let _ = writeln!(
            out,
            "  store_dir: {}",
            q(&self.store_dir.display().to_string())
        );
        if let Some(domain) = &self.jetstream_domain {
            let _ = writeln!(out, "  domain: {}", q(domain));
        }
        if let Some(key) = &self.jetstream_key {
            let _ = writeln!(out, "  cipher: chachapoly\n  key: {}", q(key));
        }
        let _ = writeln!(out, "}}");
        let _ = writeln!(out, "system_account: {SYSTEM_ACCOUNT}");
        let _ = writeln!(out, "accounts {{");
        // Each service user lives in one account: the callout in AUTH, the revoker in the
        // system account (the only one that may disconnect clients), the others in WHISTLE.
        let account_of = |service: Service| match service {
            Service::Callout => AUTH_ACCOUNT,
            Service::Revoker => SYSTEM_ACCOUNT,
            _ => APP_ACCOUNT,
        };
        let users = |out: &mut String, account: &str| {
            for (service, key) in &self.services {
                if account_of(*service) != account {
                    continue;
                }
                let permissions = service_permissions(*service, &self.streams);
                let _ = writeln!(
                    out,
                    "      # {}\n      {{ nkey: {}{} }}",
                    service.name(),
                    q(key),
                    render_permissions(&permissions)
                );
            }
        };
        let _ = writeln!(out, "  {SYSTEM_ACCOUNT} {{\n    users: [");
        users(&mut out, SYSTEM_ACCOUNT);
        let _ = writeln!(out, "    ]\n  }}");
        let _ = writeln!(out, "  {AUTH_ACCOUNT} {{\n    users: [");
        users(&mut out, AUTH_ACCOUNT);
        let _ = writeln!(out, "    ]\n  }}");
        let _ = writeln!(
            out,
            "  {APP_ACCOUNT} {{\n    jetstream: enabled\n    users: ["
        );
        users(&mut out, APP_ACCOUNT);
        let _ = writeln!(out, "    ]\n  }}");
        let _ = writeln!(out, "}}");
        let bypass: Vec<String> = self.services.iter().map(|(_, key)| q(key)).collect();
        let _ = writeln!(
            out,
            "authorization {{\n  timeout: {}\n  auth_callout {{\n    issuer: {}\n    account: {AUTH_ACCOUNT}\n    auth_users: [ {} ]\n  }}\n}}",
            self.auth_timeout_secs,
            q(&self.issuer),
            bypass.join(", ")
        );
        out
    }

    /// The `leafnodes` block: a hub listens and binds every city's link to the application
    /// account; a city dials the hub with the shared leaf password, denying the subjects that
    /// must not cross ([`leaf_denials`]).
    fn render_leafnodes(&self, out: &mut String) {
        let q = quote;
        let list =
            |subjects: &[String]| subjects.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "leafnodes {{");
        if let Some(hub) = &self.leaf_hub {
            let _ = writeln!(
                out,
                "  listen: {}",
                q(&format!("{}:{}", hub.host, hub.port))
            );
            let _ = writeln!(
                out,
                "  authorization {{\n    user: {}\n    password: {}\n    account: {APP_ACCOUNT}\n    timeout: 5\n  }}",
                q(LEAF_USER),
                q(&hub.password)
            );
            if let Some(tls) = &hub.tls {
                out.push_str(&mutual_tls(tls, "  ", true));
            }
        }
        if let Some(remote) = &self.leaf_remote {
            let urls: Vec<String> = remote
                .urls
                .iter()
                .map(|url| format!("nats-leaf://{LEAF_USER}:{}@{url}", remote.password))
                .collect();
            let (deny_exports, deny_imports) =
                leaf_denials(self.jetstream_domain.as_deref(), &self.streams);
            let tls = remote
                .tls
                .as_ref()
                .map_or_else(String::new, |tls| mutual_tls(tls, "      ", false));
            let _ = writeln!(
                out,
                "  remotes: [\n    {{\n      urls: [{}]\n      account: {APP_ACCOUNT}\n{tls}      deny_exports: [{}]\n      deny_imports: [{}]\n    }}\n  ]",
                list(&urls),
                list(&deny_exports),
                list(&deny_imports)
            );
        }
        let _ = writeln!(out, "}}");
    }
}

/// What a city's leaf link refuses to carry, as (`deny_exports`: never sent to the hub,
/// `deny_imports`: never taken from it). Only JetStream's sourcing of the city's events by the
/// hub needs to cross: the hub asks `$JS.{domain}.API.CONSUMER.CREATE.{events}…` and the city
/// answers and delivers on reply subjects. So, both ways, the application's own subjects stay in
/// their city (a city's reports, events and commands never reach another city's or the hub's
/// streams or services), as do object store and key-value traffic. Out, no city identity may call
/// any JetStream API across the link (the hub's or, through it, another city's). In, nothing from
/// the province may manage the city's streams, its account or its servers, nor read the streams
/// other than the events (raw reports carry residents' contacts). nats-server accepts no
/// permissions on the hub's leaf user, so these lists are the city's own server's to enforce
/// (docs/security.md). Without a domain the city's JetStream answers only `$JS.API`, denied
/// whole.
pub fn leaf_denials(domain: Option<&str>, streams: &StreamNames) -> (Vec<String>, Vec<String>) {
    let local = ["whistle.>", "$O.>", "$KV.>"];
    let exports = local
        .iter()
        .map(|s| s.to_string())
        .chain(["$JS.API.>".into(), "$JS.*.API.>".into()])
        .collect();
    let mut imports: Vec<String> = local.iter().map(|s| s.to_string()).collect();
    imports.push("$JS.API.>".into());
    let Some(domain) = domain else {
        return (exports, imports);
    };
    let api = format!("$JS.{domain}.API");
    for part in [
        "STREAM",
        "ACCOUNT",
        "META",
        "SERVER",
        "DIRECT",
        "CONSUMER.DURABLE",
    ] {
        imports.push(format!("{api}.{part}.>"));
    }
    imports.push(format!("{api}.INFO"));
    for stream in [&streams.reports, &streams.rejected, &streams.photos] {
        // `CONSUMER.{CREATE|INFO|DELETE|LIST|NAMES}.{stream}[.…]` and
        // `CONSUMER.MSG.NEXT.{stream}.…`.
        imports.push(format!("{api}.CONSUMER.*.{stream}"));
        imports.push(format!("{api}.CONSUMER.*.{stream}.>"));
        imports.push(format!("{api}.CONSUMER.*.*.{stream}.>"));
    }
    (exports, imports)
}

/// The `tls` block of a link whose two ends verify each other against one CA (routes, leaf
/// links), indented by `indent`; `verify` on the listening end asks the dialler for its
/// certificate (a dialler verifies the listener's anyway).
fn mutual_tls(tls: &RouteTls, indent: &str, verify: bool) -> String {
    let q = quote;
    let inner = format!("{indent}  ");
    let verify = if verify {
        format!("{inner}verify: true\n")
    } else {
        String::new()
    };
    format!(
        "{indent}tls {{\n{inner}cert_file: {}\n{inner}key_file: {}\n{inner}ca_file: {}\n{verify}{inner}timeout: 5\n{indent}}}\n",
        q(&tls.cert_file.display().to_string()),
        q(&tls.key_file.display().to_string()),
        q(&tls.ca_file.display().to_string())
    )
}

/// The `cluster` block: routes in and out authenticate with the shared user and password, and
/// with TLS each end verifies the other's certificate against the CA.
fn render_cluster(out: &mut String, cluster: &Cluster) {
    let q = quote;
    let _ = writeln!(out, "cluster {{");
    let _ = writeln!(out, "  name: {}", q(&cluster.name));
    let _ = writeln!(
        out,
        "  listen: {}",
        q(&format!("{}:{}", cluster.host, cluster.port))
    );
    let _ = writeln!(
        out,
        "  authorization {{\n    user: {}\n    password: {}\n    timeout: 5\n  }}",
        q(ROUTE_USER),
        q(&cluster.password)
    );
    if let Some(tls) = &cluster.tls {
        out.push_str(&mutual_tls(tls, "  ", true));
    }
    let routes: Vec<String> = cluster
        .routes
        .iter()
        .map(|route| {
            q(&format!(
                "nats-route://{ROUTE_USER}:{}@{route}",
                cluster.password
            ))
        })
        .collect();
    let _ = writeln!(out, "  routes: [{}]", routes.join(", "));
    let _ = writeln!(out, "}}");
}

fn render_permissions(p: &StaticPermissions) -> String {
    let list = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if let Some(publish) = &p.publish {
        parts.push(format!("publish: {{ allow: [{}] }}", list(publish)));
    }
    if let Some(subscribe) = &p.subscribe {
        parts.push(format!("subscribe: {{ allow: [{}] }}", list(subscribe)));
    }
    if p.allow_responses {
        parts.push("allow_responses: true".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", permissions: {{ {} }}", parts.join(", "))
    }
}

/// A double-quoted string of the configuration language (JSON escapes are understood).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 4222,
            http_port: Some(8222),
            store_dir: "/var/lib/whistle/js".into(),
            tls: Some(Tls {
                cert_file: "/etc/whistle/nats.crt".into(),
                key_file: "/etc/whistle/nats.key".into(),
            }),
            jetstream_key: Some("k3y".into()),
            max_payload: 1 << 20,
            max_connections: Some(5000),
            auth_timeout_secs: 5.0,
            issuer: "AISSUER".into(),
            services: vec![
                (Service::Dispatch, "UDISPATCH".into()),
                (Service::Query, "UQUERY".into()),
                (Service::Admin, "UADMIN".into()),
                (Service::Callout, "UCALLOUT".into()),
                (Service::Revoker, "UREVOKER".into()),
            ],
            streams: StreamNames::default(),
            server_name: None,
            server_tags: Vec::new(),
            cluster: None,
            jetstream_domain: None,
            leaf_hub: None,
            leaf_remote: None,
        }
    }

    #[test]
    fn the_rendered_config_places_services_and_names_every_bypass_user() {
        let text = config().render();
        assert!(text.contains(
            "auth_users: [ \"UDISPATCH\", \"UQUERY\", \"UADMIN\", \"UCALLOUT\", \"UREVOKER\" ]"
        ));
        let system = text.find("  SYS {").unwrap();
        let revoker = text.find("UREVOKER\", permissions").unwrap();
        assert!(
            system < revoker && revoker < text.find("  AUTH {").unwrap(),
            "the revoker lives in the system account"
        );
        assert!(text.contains("\"$SYS.REQ.SERVER.*.KICK\""));
        assert!(text.contains("issuer: \"AISSUER\"\n    account: AUTH"));
        assert!(text.contains("cipher: chachapoly\n  key: \"k3y\""));
        assert!(text.contains("cert_file: \"/etc/whistle/nats.crt\""));
        assert!(text.contains("max_connections: 5000"));
        let auth = text.find("  AUTH {").unwrap();
        let app = text.find("  WHISTLE {").unwrap();
        let callout = text.find("UCALLOUT\"").unwrap();
        let dispatch = text.find("UDISPATCH\", permissions").unwrap();
        assert!(
            auth < callout && callout < app,
            "the callout user lives in AUTH"
        );
        assert!(app < dispatch, "services live in WHISTLE");
        assert!(
            text.contains("{ nkey: \"UADMIN\" }"),
            "admin is unrestricted"
        );
        assert!(text.contains("\"$JS.ACK.WHISTLE_REPORTS.whistle-dispatch.>\""));
    }

    #[test]
    fn without_tls_or_key_those_blocks_are_absent() {
        let mut c = config();
        c.tls = None;
        c.jetstream_key = None;
        c.http_port = None;
        let text = c.render();
        assert!(!text.contains("tls {"));
        assert!(!text.contains("cipher"));
        assert!(!text.contains("http_port"));
    }

    #[test]
    fn a_single_server_has_no_name_and_no_cluster_block() {
        let text = config().render();
        assert!(!text.contains("server_name"));
        assert!(!text.contains("server_tags"));
        assert!(!text.contains("cluster {"));
        assert!(!text.contains("domain:"));
        assert!(!text.contains("leafnodes {"));
    }

    #[test]
    fn a_hub_listens_for_leaf_nodes_bound_to_the_application_account() {
        let mut c = config();
        c.jetstream_domain = Some("province".into());
        c.leaf_hub = Some(LeafHub {
            host: "0.0.0.0".into(),
            port: 7422,
            password: "l3af-_".into(),
            tls: None,
        });
        let text = c.render();
        let block = &text[text.find("leafnodes {").unwrap()..text.find("jetstream {").unwrap()];
        assert_eq!(
            block,
            "leafnodes {\n  listen: \"0.0.0.0:7422\"\n  authorization {\n    user: \"whistle-leaf\"\n    \
             password: \"l3af-_\"\n    account: WHISTLE\n    timeout: 5\n  }\n}\n"
        );
        assert!(
            text.contains(
                "jetstream {\n  store_dir: \"/var/lib/whistle/js\"\n  domain: \"province\"\n"
            ),
            "{text}"
        );
        assert!(!block.contains("remotes"));
    }

    #[test]
    fn a_city_dials_its_hub_with_the_leaf_password_and_keeps_its_own_subjects() {
        let mut c = config();
        c.jetstream_domain = Some("ordos".into());
        c.leaf_remote = Some(LeafRemote {
            urls: vec!["hub1.example:7422".into(), "10.1.0.2:7422".into()],
            password: "pw".into(),
            tls: None,
        });
        let text = c.render();
        let block = &text[text.find("leafnodes {").unwrap()..text.find("jetstream {").unwrap()];
        assert!(block.contains(
            "  remotes: [\n    {\n      urls: [\"nats-leaf://whistle-leaf:pw@hub1.example:7422\", \
             \"nats-leaf://whistle-leaf:pw@10.1.0.2:7422\"]\n      account: WHISTLE\n"
        ), "{block}");
        assert!(!block.contains("listen"), "a city accepts no leaf nodes");
        assert!(block.contains(
            "deny_exports: [\"whistle.>\", \"$O.>\", \"$KV.>\", \"$JS.API.>\", \"$JS.*.API.>\"]"
        ), "{block}");
        let imports = &block[block.find("deny_imports").unwrap()..];
        for denied in [
            "\"whistle.>\"",
            "\"$JS.ordos.API.STREAM.>\"",
            "\"$JS.ordos.API.CONSUMER.*.WHISTLE_REPORTS.>\"",
            "\"$JS.ordos.API.CONSUMER.*.*.OBJ_WHISTLE_PHOTOS.>\"",
        ] {
            assert!(imports.contains(denied), "{denied} in {imports}");
        }
        assert!(
            !imports.contains("WHISTLE_EVENTS"),
            "the hub sources the events: {imports}"
        );
        assert!(
            !block.contains("tls {"),
            "no TLS unless certificates are given"
        );
    }

    #[test]
    fn leaf_links_with_certificates_verify_each_other() {
        let tls = |name: &str| RouteTls {
            cert_file: format!("/etc/whistle/{name}.crt").into(),
            key_file: format!("/etc/whistle/{name}.key").into(),
            ca_file: "/etc/whistle/ca.crt".into(),
        };
        let mut hub = config();
        hub.leaf_hub = Some(LeafHub {
            host: "0.0.0.0".into(),
            port: 7422,
            password: "p".into(),
            tls: Some(tls("hub")),
        });
        let text = hub.render();
        assert!(
            text.contains(
                "    timeout: 5\n  }\n  tls {\n    cert_file: \"/etc/whistle/hub.crt\"\n    key_file: \"/etc/whistle/hub.key\"\n    ca_file: \"/etc/whistle/ca.crt\"\n    verify: true\n"
            ),
            "{text}"
        );
        let mut city = config();
        city.jetstream_domain = Some("ordos".into());
        city.leaf_remote = Some(LeafRemote {
            urls: vec!["hub:7422".into()],
            password: "p".into(),
            tls: Some(tls("ordos")),
        });
        let text = city.render();
        assert!(
            text.contains(
                "      account: WHISTLE\n      tls {\n        cert_file: \"/etc/whistle/ordos.crt\"\n        key_file: \"/etc/whistle/ordos.key\"\n        ca_file: \"/etc/whistle/ca.crt\"\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_leaf_denials_let_the_events_be_sourced_and_nothing_else() {
        let (exports, imports) = leaf_denials(Some("ordos"), &StreamNames::default());
        let (_, without_domain) = leaf_denials(None, &StreamNames::default());
        assert!(without_domain.contains(&"$JS.API.>".to_owned()));
        assert!(!without_domain.iter().any(|s| s.contains("..")));
        // nats-server's own subject matching, spelled out for the subjects that matter.
        let matches = |pattern: &str, subject: &str| {
            let (p, s): (Vec<&str>, Vec<&str>) =
                (pattern.split('.').collect(), subject.split('.').collect());
            for (i, token) in p.iter().enumerate() {
                match *token {
                    ">" => return s.len() > i,
                    "*" if i < s.len() => {}
                    t if s.get(i) == Some(&t) => {}
                    _ => return false,
                }
            }
            p.len() == s.len()
        };
        let denied = |list: &[String], subject: &str| list.iter().any(|p| matches(p, subject));
        for allowed in [
            "$JS.ordos.API.CONSUMER.CREATE.WHISTLE_EVENTS.abc.whistle.event.>",
            "$JS.ordos.API.CONSUMER.CREATE.WHISTLE_EVENTS",
            "$JS.ordos.API.CONSUMER.DELETE.WHISTLE_EVENTS.abc",
        ] {
            assert!(!denied(&imports, allowed), "{allowed}");
        }
        for refused in [
            "$JS.ordos.API.STREAM.DELETE.WHISTLE_EVENTS",
            "$JS.ordos.API.STREAM.PURGE.WHISTLE_EVENTS",
            "$JS.ordos.API.CONSUMER.CREATE.WHISTLE_REPORTS.x.whistle.report.>",
            "$JS.ordos.API.CONSUMER.MSG.NEXT.WHISTLE_REPORTS.whistle-dispatch",
            "$JS.ordos.API.CONSUMER.DURABLE.CREATE.WHISTLE_EVENTS.x",
            "$JS.ordos.API.INFO",
            "whistle.report.150602.150602001.150602001001",
        ] {
            assert!(denied(&imports, refused), "{refused}");
        }
        for refused in [
            "$JS.province.API.STREAM.DELETE.WHISTLE_PROVINCE_EVENTS",
            "$JS.hohhot.API.STREAM.PURGE.WHISTLE_EVENTS",
            "$JS.API.STREAM.LIST",
            "whistle.event.150602.150602001.created",
        ] {
            assert!(denied(&exports, refused), "{refused}");
        }
    }

    #[test]
    fn a_cluster_node_names_itself_and_routes_with_the_shared_password() {
        let mut c = config();
        c.server_name = Some("whistle-n1".into());
        c.server_tags = vec!["dc:ordos-1".into()];
        c.cluster = Some(Cluster {
            name: "whistle".into(),
            host: "10.77.0.11".into(),
            port: 6222,
            routes: vec!["10.77.0.12:6222".into(), "10.77.0.13:6222".into()],
            password: "s3cret-_".into(),
            tls: None,
        });
        let text = c.render();
        assert!(text.contains("server_name: \"whistle-n1\"\n"), "{text}");
        assert!(text.contains("server_tags: [\"dc:ordos-1\"]\n"), "{text}");
        assert!(text.contains("  name: \"whistle\"\n  listen: \"10.77.0.11:6222\"\n"));
        assert!(text.contains(
            "  authorization {\n    user: \"whistle-route\"\n    password: \"s3cret-_\"\n"
        ));
        assert!(text.contains(
            "  routes: [\"nats-route://whistle-route:s3cret-_@10.77.0.12:6222\", \
             \"nats-route://whistle-route:s3cret-_@10.77.0.13:6222\"]"
        ));
        assert!(
            !text[text.find("cluster {").unwrap()..].contains("verify"),
            "no TLS on routes unless certificates are given"
        );
        // The cluster block sits at the top level, before JetStream's.
        assert!(text.find("cluster {").unwrap() < text.find("jetstream {").unwrap());
    }

    #[test]
    fn routes_with_certificates_verify_each_other() {
        let mut c = config();
        c.server_name = Some("n2".into());
        c.cluster = Some(Cluster {
            name: "whistle".into(),
            host: "0.0.0.0".into(),
            port: 6222,
            routes: vec!["n1.example:6222".into()],
            password: "p".into(),
            tls: Some(RouteTls {
                cert_file: "/etc/whistle/route.crt".into(),
                key_file: "/etc/whistle/route.key".into(),
                ca_file: "/etc/whistle/ca.crt".into(),
            }),
        });
        let text = c.render();
        let block = &text[text.find("cluster {").unwrap()..text.find("jetstream {").unwrap()];
        assert!(
            block.contains(
                "  tls {\n    cert_file: \"/etc/whistle/route.crt\"\n    key_file: \"/etc/whistle/route.key\"\n    ca_file: \"/etc/whistle/ca.crt\"\n    verify: true\n"
            ),
            "{block}"
        );
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
